"""Turns: one holder per key at a time, in arrival order, and nothing kept once unused."""

from __future__ import annotations

import asyncio

import pytest

from projections.turns import Turns


async def test_holders_of_one_key_take_turns_in_arrival_order() -> None:
    turns, order = Turns(), []

    async def hold(name: str) -> None:
        async with turns.turn("k"):
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"), hold("c"))
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert len(turns) == 0


async def test_different_keys_do_not_wait_for_each_other() -> None:
    turns = Turns()
    async with turns.turn("a"):
        # Would deadlock if "b" shared "a"'s lock.
        await asyncio.wait_for(_enter(turns, "b"), timeout=5)
        assert len(turns) == 1


async def _enter(turns: Turns, key: str) -> None:
    async with turns.turn(key):
        pass


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    turns = Turns()
    async with turns.turn("k"):
        waiter = asyncio.ensure_future(_enter(turns, "k"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(turns) == 0


async def test_an_error_in_the_body_releases_the_turn() -> None:
    turns = Turns()
    with pytest.raises(RuntimeError):
        async with turns.turn("k"):
            raise RuntimeError("boom")
    assert len(turns) == 0
    await asyncio.wait_for(_enter(turns, "k"), timeout=5)
