/** Marks a timer so it never keeps the process alive (Node returns an object, Deno a number). */
export function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
