"""ctxlog's projections: the pure fold of context events into state, token counts, windows
and diffs; and on top of them the IO half: the SQLite read model, the projector that keeps it,
time travel, and the ``Contexts`` service the API calls."""

from .context import Resolver, content_hash, evolve, fold, merge_patch, validate
from .diff import MetadataChange, StateDiff, WindowChange, diff, metadata_changes
from .errors import (
    ContextExists,
    ContextIsDeleted,
    ContextNotFound,
    DuplicateMessage,
    EncodingUnavailable,
    InvalidCommand,
    InvalidVersion,
    MessageNotFound,
    MissingHistory,
    ProjectionError,
    ReadModelInUse,
    UnknownModel,
)
from .history import CHUNK, SNAPSHOT_EVERY, History
from .readmodel import ReadModel
from .runner import Projector, ProjectorFailed
from .search import SearchHit, SearchPage, plain_text
from .service import Caller, ContextPage, Contexts, Lineage, MessagePage, NewMessage, Written
from .state import ContextState, Message, ParentRef, Summary, TokenCounting
from .tables import ContextRow
from .tokens import REPLY_PRIMING, TokenCounter, encoding_name_for_model, load_encoding
from .window import (
    LeftOut,
    Policy,
    Reason,
    Tail,
    Window,
    WindowEntry,
    compose,
    select_tail,
    served_event,
    window,
    window_hash,
)

__all__ = [
    "CHUNK",
    "REPLY_PRIMING",
    "SNAPSHOT_EVERY",
    "Caller",
    "ContextExists",
    "ContextIsDeleted",
    "ContextNotFound",
    "ContextPage",
    "ContextRow",
    "ContextState",
    "Contexts",
    "DuplicateMessage",
    "EncodingUnavailable",
    "History",
    "InvalidCommand",
    "InvalidVersion",
    "LeftOut",
    "Lineage",
    "Message",
    "MessageNotFound",
    "MessagePage",
    "MetadataChange",
    "MissingHistory",
    "NewMessage",
    "ParentRef",
    "Policy",
    "ProjectionError",
    "Projector",
    "ProjectorFailed",
    "ReadModel",
    "ReadModelInUse",
    "Reason",
    "Resolver",
    "SearchHit",
    "SearchPage",
    "StateDiff",
    "Summary",
    "Tail",
    "TokenCounter",
    "TokenCounting",
    "UnknownModel",
    "Window",
    "WindowChange",
    "WindowEntry",
    "Written",
    "compose",
    "content_hash",
    "diff",
    "encoding_name_for_model",
    "evolve",
    "fold",
    "load_encoding",
    "merge_patch",
    "metadata_changes",
    "plain_text",
    "select_tail",
    "served_event",
    "validate",
    "window",
    "window_hash",
]
