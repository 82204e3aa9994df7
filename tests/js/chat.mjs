// The chat example (debug mode): refused calls, login, history and presence ranges, a get,
// and a conversation with a Python client. Args: url. Prints "ready" once subscribed.
import { AUTH_KEY, HeTuClient, MAX_INT64, emit, run, settle, until } from "./harness.mjs";

run(async ([url]) => {
  const client = await HeTuClient.connect(url, { authKey: AUTH_KEY });
  const result = {};
  result.beforeLogin = await settle(client.call("user_chat", "too early"));
  result.missingArgument = await settle(client.call("user_login", 1001));
  result.unknownComponent = await settle(client.range("NoSuchComponent", "id", 0, 1));
  result.login = await client.call("user_login", 1001, "alice");
  const messages = await client.range("ChatMessage", "id", 0, MAX_INT64, { limit: 1024 });
  const users = await client.range("OnlineUser", "owner", 0, MAX_INT64, { limit: 512 });
  const me = await client.get("OnlineUser", "owner", 1001);
  const texts = () => messages.rowsList().map((row) => row.text);
  emit("ready", { texts: texts(), me: me.row, meSubId: me.subId });

  result.sawBob = await until(() => texts().includes("hi alice") && [...users.rows.values()].some((u) => u.name === "bob"));
  result.chat = await client.call("user_chat", "hello bob");
  await until(() => texts().includes("hello bob"));
  result.texts = texts();
  result.users = users.rowsList().map((u) => [u.name, u.online]);
  result.idTypes = messages.rowsList().map((row) => typeof row.id);
  result.me = me.row;
  await client.close();
  return result;
});
