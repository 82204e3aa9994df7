// Shared by the Node scripts of the JavaScript SDK tests: the built SDK, and JSON-line output
// (`{"event": name, ...}`) that tests/js/conftest.py reads. A bigint prints as "<digits>n".

export * from "../../clients/js/dist/hetu-client.js";

export const AUTH_KEY = "password123";

function replacer(_key, value) {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return { bytes: [...value] };
  if (value instanceof Error) return { error: value.name, message: value.message, ...value };
  return value;
}

/** Print one event line. */
export function emit(event, data = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...data }, replacer)}\n`);
}

/** What a promise settles to: its value, or the error's name and fields. */
export async function settle(promise) {
  try {
    return { value: await promise };
  } catch (err) {
    return { error: err.name, message: err.message, code: err.code, endpoint: err.endpoint, reason: err.reason };
  }
}

/** Resolve once `predicate()` is true; false after `timeoutMs`. */
export async function until(predicate, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/** Run `main`, print its result as the "result" event (or an "error" event), and exit. */
export async function run(main) {
  try {
    emit("result", await main(process.argv.slice(2)));
    process.exit(0);
  } catch (err) {
    emit("error", { error: `${err.name}: ${err.message}\n${err.stack}` });
    process.exit(1);
  }
}
