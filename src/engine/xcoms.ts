import type { TaskInstanceStore, XComKey, XComStore } from '#store/port.ts';

/**
 * The XCom of a task instance's current successful try, or undefined. An XCom written by a try
 * whose report was then refused (a zombie's late success), or by an earlier try of a TI that
 * has run again since, is not its current value and is never handed downstream.
 */
export async function readCurrentXCom(
  store: XComStore & TaskInstanceStore,
  key: XComKey,
): Promise<string | undefined> {
  const [entry, ti] = await Promise.all([store.getXComEntry(key), store.getTaskInstance(key)]);
  if (!entry || !ti || ti.state !== 'success') return undefined;
  // Values stored before tries were recorded carry 0: the TI's success is then the only check.
  return entry.tryNumber === 0 || entry.tryNumber === ti.tryNumber ? entry.value : undefined;
}
