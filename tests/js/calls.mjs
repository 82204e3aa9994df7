// Calls against the gateway tests' app (release mode): replies, rejections, a refused
// handshake, and the connection a failed call costs. Args: url, unreachable url.
import { AUTH_KEY, HeTuClient, run, settle } from "./harness.mjs";

run(async ([url, unreachable]) => {
  const client = await HeTuClient.connect(url, { authKey: AUTH_KEY });
  const result = { state: client.state };
  result.motd = await client.motd();
  result.login = await client.call("login", 1001);
  result.posted = await client.call("post", 42, 7, "from node");
  result.limited = [await settle(client.call("limited")), await settle(client.call("limited")), await settle(client.call("limited"))];
  result.stillOpen = client.isOpen;
  result.wrongKey = await settle(HeTuClient.connect(url, { authKey: "not the key" }));
  result.unreachable = await settle(HeTuClient.connect(unreachable, { authKey: AUTH_KEY, timeoutMs: 3000 }));
  result.crash = await settle(client.call("crash"));
  await client.closed;
  result.closedState = client.state;
  result.closeReason = client.closeReason;
  result.afterClose = await settle(client.call("login", 1001));
  return result;
});
