// Type-checked (never run) by test_generated_types.py against the chat example's rows as
// `hetu build` writes them (./components.ts) and the SDK's built declarations.
import {
  CallRejected, HeTuClient, HeTuSession, MAX_INT64, int64, type Change, type Int64, type LiveRange, type LiveRow,
} from "hetu-client";
import { COMPONENTS, type ChatMessage, type ComponentName, type ComponentRows, type OnlineUser } from "./components.js";

export async function chat(url: string): Promise<string[]> {
  const client = await HeTuClient.connect<ComponentRows>(url, { authKey: "password123", timeoutMs: 5000 });
  await client.call("user_login", 1001, "Alice");

  const messages: LiveRange<ChatMessage> | null = await client.range("ChatMessage", "id", 0, MAX_INT64, { limit: 100 });
  const stop = messages?.onInsert((row) => {
    const text: string = row.text;
    const at: number | bigint = row.created_at_ms;
    void [text, at];
  });
  stop?.();
  const byId: ChatMessage | undefined = messages?.rows.get(int64("7390000000000000001"));
  void byId;

  const me: LiveRow<OnlineUser> | null = await client.get("OnlineUser", "owner", 1001);
  const online: number | undefined = me?.row?.online;
  me?.onUpdate((row, old) => void [row.last_seen_ms, old.name]);
  void online;

  if (messages !== null) {
    for await (const change of messages) {
      const seen: Change<ChatMessage> = change;
      const id: Int64 = seen.id;
      if (change.kind === "delete") void [id, change.old?.text];
      break;
    }
  }

  // @ts-expect-error: not a component of the Chat namespace
  await client.range("Hero", "id", 0, 1);
  // @ts-expect-error: not a field of ChatMessage
  await client.range("ChatMessage", "colour", 0, 1);
  // @ts-expect-error: name is a string field
  await client.get("OnlineUser", "name", 5);

  const names: ComponentName[] = [...COMPONENTS];
  const session = new HeTuSession<ComponentRows>(url, {
    authKey: "password123",
    onConnect: (connection) => connection.call("user_login", 1001, "Alice"),
    minDelayMs: 100,
    maxDelayMs: 2000,
  });
  await session.start();
  const users = await session.range("OnlineUser", "owner", 0, MAX_INT64, { limit: 512 });
  try {
    await session.call("user_chat", "hello");
  } catch (err) {
    if (err instanceof CallRejected) void err.code;
  }
  await session.close();
  await client.close();
  return [...names, ...(users?.rowsList().map((user) => user.name) ?? [])];
}

// Without generated types any component and field is accepted.
export async function untyped(url: string): Promise<unknown> {
  const client = await HeTuClient.connect(url);
  const live = await client.range("Anything", "score", 1, 2);
  return live?.rowsList()[0]?.score;
}
