// A debug server with MAX_ROW_SUBSCRIPTION=1 answers a second get with its reply and then
// an extra ["sub", "fail", …] frame; calls sent right behind it must still get their own
// replies. Args: url.
import { AUTH_KEY, HeTuClient, run, settle } from "./harness.mjs";

run(async ([url]) => {
  const client = await HeTuClient.connect(url, { authKey: AUTH_KEY });
  const ids = [await client.call("post", 31, 0, "a"), await client.call("post", 31, 1, "b")];
  await client.get("Board", "id", ids[0]);
  const [second, nine, ten] = await Promise.all([
    settle(client.get("Board", "id", ids[1])),
    settle(client.call("post", 31, 9, "nine")),
    settle(client.call("post", 31, 10, "ten")),
  ]);
  const result = { secondRow: second.value?.row ?? second, nine, ten, unsolicited: client.unsolicited };
  await client.close();
  return result;
});
