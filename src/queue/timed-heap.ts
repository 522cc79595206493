/** A binary min-heap of `(at, value)` entries: the in-memory queue's agenda of hidden messages. */
export class TimedHeap<T> {
  #entries: { at: number; value: T }[] = [];

  get size(): number {
    return this.#entries.length;
  }

  push(at: number, value: T): void {
    const entries = this.#entries;
    entries.push({ at, value });
    let index = entries.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (entries[parent]!.at <= entries[index]!.at) break;
      this.#swap(index, parent);
      index = parent;
    }
  }

  peek(): { at: number; value: T } | undefined {
    return this.#entries[0];
  }

  pop(): { at: number; value: T } | undefined {
    const entries = this.#entries;
    const top = entries[0];
    const last = entries.pop();
    if (top === undefined || last === undefined || entries.length === 0) return top;
    entries[0] = last;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      const right = left + 1;
      let smallest = index;
      if (left < entries.length && entries[left]!.at < entries[smallest]!.at) smallest = left;
      if (right < entries.length && entries[right]!.at < entries[smallest]!.at) smallest = right;
      if (smallest === index) break;
      this.#swap(index, smallest);
      index = smallest;
    }
    return top;
  }

  /** Drops every entry `keep` refuses, then restores the heap order. */
  retain(keep: (value: T, at: number) => boolean): void {
    const kept = this.#entries.filter((entry) => keep(entry.value, entry.at));
    this.#entries = [];
    for (const entry of kept) this.push(entry.at, entry.value);
  }

  #swap(a: number, b: number): void {
    const entries = this.#entries;
    const held = entries[a]!;
    entries[a] = entries[b]!;
    entries[b] = held;
  }
}
