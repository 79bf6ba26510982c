// A list of any length that keeps only the rows in view (and a few around them) in the
// page: a 10,000-event timeline is a few dozen elements, not 10,000. Rows have one fixed
// height, so where row i sits is arithmetic, and the scroll bar is honest.

import { h } from "./dom.js";

const OVERSCAN = 8;

export class VirtualList {
  /**
   * ``render(i)`` makes row i's element; ``onRange(first, last)`` says which rows are in
   * view (to fetch what they show).
   */
  constructor({ count, rowHeight, render, onRange, label }) {
    this.rowHeight = rowHeight;
    this.render = render;
    this.onRange = onRange || (() => {});
    this.count = 0;
    this.rows = new Map();
    this.spacer = h("div", { class: "vspacer" });
    this.el = h("div", { class: "vlist", role: "list", "aria-label": label || "list", tabindex: "0" }, this.spacer);
    this.el.addEventListener("scroll", () => this.schedule());
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.el);
    this.setCount(count);
  }

  setCount(count) {
    this.count = count;
    this.spacer.style.height = count * this.rowHeight + "px";
    for (const [i, node] of this.rows) {
      if (i >= count) {
        node.remove();
        this.rows.delete(i);
      }
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  range() {
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.el.scrollTop / this.rowHeight) - OVERSCAN);
    const last = Math.min(this.count - 1, Math.ceil((this.el.scrollTop + height) / this.rowHeight) + OVERSCAN);
    return [first, last];
  }

  draw() {
    const [first, last] = this.range();
    for (const [i, node] of this.rows) {
      if (i < first || i > last) {
        node.remove();
        this.rows.delete(i);
      }
    }
    for (let i = first; i <= last; i++) {
      if (!this.rows.has(i)) this.place(i);
    }
    if (last >= first) this.onRange(first, last);
  }

  place(i) {
    const node = this.render(i);
    node.classList.add("vrow");
    node.style.top = i * this.rowHeight + "px";
    node.style.height = this.rowHeight + "px";
    this.rows.set(i, node);
    this.spacer.append(node);
  }

  /** Render the rows in view again (their data arrived or changed). */
  refresh(first = 0, last = Infinity) {
    // The indices first: placing a row re-adds it to the map, which a live loop would visit
    // again, for ever.
    const stale = [...this.rows.keys()].filter((i) => i >= first && i <= last);
    for (const i of stale) {
      this.rows.get(i).remove();
      this.rows.delete(i);
      this.place(i);
    }
  }

  /** Scroll so that row i is in view (centred unless ``edge`` says "end"). */
  scrollTo(i, edge = "center") {
    const height = this.el.clientHeight || 600;
    const top = i * this.rowHeight;
    this.el.scrollTop = edge === "end" ? top - height + this.rowHeight * 2 : top - height / 2;
    this.draw();
  }

  destroy() {
    this.resize.disconnect();
  }
}
