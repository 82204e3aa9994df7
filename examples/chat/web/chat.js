// The chat page: joins the room of examples/chat/server through the HeTu JavaScript
// client (vendor/hetu-client.js), shows the messages and the people online as the server
// pushes them, and sends what is typed.
//
// On the wire: `user_login(user_id, name)` elevates the connection to that user, then two
// live ranges follow the room (the latest ChatMessage rows, every OnlineUser row); each
// change the server commits to them arrives as an insert or update callback.

import { ConnectionClosed, HandshakeError, HeTuSession, MAX_INT64 } from "./vendor/hetu-client.js";
import { userIdOf } from "./user-id.js";

const DEFAULT_AUTH_KEY = "password123"; // auth_key of examples/chat/server/config.yml
const HISTORY = 100; // messages shown on joining
const MAX_SHOWN = 500; // the oldest messages leave the page past this many
const MAX_USERS = 512; // OnlineUser rows followed (offline ones included)
const CONNECT_TIMEOUT_MS = 5000;
const START_COMMAND = "hetu start --config=examples/chat/server/config.yml";

/**
 * Where the chat server is: the websocket of the host that served this page, unless the
 * address says otherwise, e.g. `index.html?server=ws://127.0.0.1:2466/hetu/dev&key=password123`.
 */
function serverSettings(location) {
  const query = new URLSearchParams(location.search);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const served = location.host ? `${scheme}//${location.host}/hetu/dev` : null;
  return { url: query.get("server") || served, authKey: query.get("key") || DEFAULT_AUTH_KEY };
}

/** Raised from the login of a reconnection when the user joined in another window meanwhile. */
class JoinedElsewhere extends Error {}

/**
 * One visit to the room: a reconnecting session logged in as `me`, and the live ranges
 * the view is drawn from. `view` gets `status(state)`, `message(row)`, `users(rows)` and
 * `ended(reason)` calls.
 */
class ChatRoom {
  constructor(settings, me, view) {
    this.settings = settings;
    this.me = me;
    this.view = view;
    this.ended = false;
    this.reachedServer = false;
    // last_seen_ms of our own login: a reconnection that finds another one knows the
    // user joined elsewhere, which closed this connection (see logIn)
    this.loginStamp = null;
    this.session = new HeTuSession(settings.url, {
      authKey: settings.authKey,
      timeoutMs: CONNECT_TIMEOUT_MS,
      maxDelayMs: 5000,
      onConnect: (client) => this.logIn(client),
    });
  }

  /** Connect, log in and follow the room; rejects with an Error whose message says why not. */
  async join() {
    try {
      await this.session.start();
      const messages = await this.session.range("ChatMessage", "created_at_ms", 0, MAX_INT64,
        { limit: HISTORY, desc: true });
      const users = await this.session.range("OnlineUser", "owner", 0, MAX_INT64, { limit: MAX_USERS });
      for (const row of messages.rowsList().reverse()) this.view.message(row);
      // a message leaving the window of the latest HISTORY is still worth reading: no onDelete
      messages.onInsert((row) => this.view.message(row));
      messages.onUpdate((row) => this.view.message(row));
      const redrawUsers = () => this.view.users(users.rowsList());
      users.onInsert(redrawUsers);
      users.onUpdate(redrawUsers);
      users.onDelete(redrawUsers);
      redrawUsers();
    } catch (err) {
      this.ended = true;
      await this.session.close();
      throw new Error(this.explain(err));
    }
    this.view.status("online");
  }

  /** Runs on every connection the session makes, before it restores the live ranges. */
  async logIn(client) {
    this.reachedServer = true;
    if (this.loginStamp !== null) {
      const row = await readOnlineUser(client, this.me.id);
      if (row !== null && row.online && row.last_seen_ms !== this.loginStamp) {
        this.end(`You joined as ${this.me.name} in another window, so this one left the chat.`);
        throw new JoinedElsewhere("joined in another window");
      }
    }
    await client.call("user_login", this.me.id, this.me.name);
    this.loginStamp = (await readOnlineUser(client, this.me.id))?.last_seen_ms ?? null;
    client.closed.then(() => {
      if (!this.ended) this.view.status("reconnecting");
    });
    if (this.session.connections > 0) this.view.status("online"); // back after a reconnection
  }

  async send(text) {
    await this.session.call("user_chat", text);
  }

  /** `user_quit` (the others see us leave), then close the connection. */
  async leave() {
    if (this.ended) return;
    this.ended = true;
    try {
      const client = await this.session.waitConnected(2000);
      await client.call("user_quit");
    } catch {
      // not connected: the server ran on_disconnect when the connection dropped
    } finally {
      await this.session.close();
    }
  }

  end(reason) {
    if (this.ended) return;
    this.ended = true;
    void this.session.close();
    this.view.ended(reason);
  }

  explain(err) {
    const url = this.settings.url;
    if (err instanceof HandshakeError) {
      return `The server at ${url} refused the handshake: check the auth key (?key=…). ${err.message}`;
    }
    if (err instanceof ConnectionClosed && !this.reachedServer) {
      return `Cannot reach the chat server at ${url}. Is it running? Start it with: ${START_COMMAND}`;
    }
    return `Joining as ${this.me.name} failed: ${err.message}`;
  }
}

/** The OnlineUser row of a user, read once (a live get, dropped right away). */
async function readOnlineUser(client, userId) {
  const live = await client.get("OnlineUser", "owner", userId);
  if (live === null) return null;
  await live.unsubscribe();
  return live.row;
}

// -- the view ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

const STATUS_TEXT = {
  offline: () => "Offline",
  connecting: () => "Connecting…",
  online: (name) => `Online as ${name}`,
  reconnecting: () => "Connection lost, reconnecting…",
};

function compareMessages(a, b) {
  if (a.created_at_ms !== b.created_at_ms) return a.created_at_ms < b.created_at_ms ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A hue for a user's avatar, the same in every window. */
function hueOf(userId) {
  return (Number(userId) * 47) % 360;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function avatar(name, userId) {
  const node = element("span", "avatar", [...name][0]?.toUpperCase() ?? "?");
  node.setAttribute("aria-hidden", "true");
  node.style.setProperty("--hue", String(hueOf(userId)));
  return node;
}

function formatTime(date) {
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

/** The message list: rows in time order, newest at the bottom, following the bottom. */
class MessageList {
  constructor(list) {
    this.list = list;
    this.shown = new Map(); // row id -> <li>
    this.rowOf = new WeakMap(); // <li> -> row
    this.myId = null;
  }

  reset(myId) {
    this.list.replaceChildren();
    this.shown.clear();
    this.myId = myId;
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
  }

  show(row) {
    const follow = this.atBottom() || row.owner === this.myId;
    const item = this.render(row);
    const old = this.shown.get(row.id);
    if (old !== undefined) {
      old.replaceWith(item);
    } else {
      let after = this.list.lastElementChild;
      while (after !== null && compareMessages(this.rowOf.get(after), row) > 0) after = after.previousElementSibling;
      this.list.insertBefore(item, after === null ? this.list.firstElementChild : after.nextElementSibling);
    }
    this.shown.set(row.id, item);
    while (this.shown.size > MAX_SHOWN) {
      const oldest = this.list.firstElementChild;
      this.shown.delete(this.rowOf.get(oldest).id);
      oldest.remove();
    }
    if (follow) this.list.scrollTop = this.list.scrollHeight;
  }

  render(row) {
    const at = new Date(Number(row.created_at_ms));
    const time = element("time", "time", formatTime(at));
    time.dateTime = at.toISOString();
    let item;
    if (row.kind === "system") {
      item = element("li", "message system");
      item.append(element("span", "text", row.text), " ", time);
    } else {
      item = element("li", row.owner === this.myId ? "message mine" : "message");
      const meta = element("p", "meta");
      meta.append(element("span", "author", row.name), element("span", "visually-hidden", ": "), " ", time);
      item.append(avatar(row.name, row.owner), meta, element("p", "text", row.text));
    }
    this.rowOf.set(item, row);
    return item;
  }
}

/** The people online, by name, `me` marked. */
function drawUsers(list, count, rows, me) {
  const online = rows.filter((row) => row.online).sort((a, b) => a.name.localeCompare(b.name));
  list.replaceChildren(...online.map((row) => {
    const item = element("li", "user");
    item.dataset.name = row.name;
    item.append(avatar(row.name, row.owner), element("span", "name", row.name));
    if (row.owner === me.id) item.append(element("span", "you", "(you)"));
    return item;
  }));
  count.textContent = String(online.length);
}

function main() {
  const settings = serverSettings(window.location);
  const ui = {
    status: $("status"), statusText: $("status-text"),
    join: $("join"), joinForm: $("join-form"), name: $("name"), joinButton: $("join-button"),
    joinError: $("join-error"), serverUrl: $("server-url"),
    room: $("room"), messages: $("messages"), sendForm: $("send-form"), text: $("text"),
    sendError: $("send-error"), users: $("users"), userCount: $("user-count"), leave: $("leave"),
  };
  const messages = new MessageList(ui.messages);
  let room = null;
  let me = null;

  ui.serverUrl.textContent = settings.url ?? "unknown";

  const setStatus = (state) => {
    ui.status.dataset.state = state;
    ui.statusText.textContent = STATUS_TEXT[state](me?.name);
  };

  const showJoin = (error = "") => {
    setStatus("offline");
    ui.room.hidden = true;
    ui.join.hidden = false;
    ui.joinError.textContent = error;
    ui.joinButton.disabled = false;
    ui.name.disabled = false;
    ui.name.focus();
  };

  const view = {
    status: setStatus,
    message: (row) => messages.show(row),
    users: (rows) => drawUsers(ui.users, ui.userCount, rows, me),
    ended: (reason) => {
      room = null;
      showJoin(reason);
    },
  };

  ui.joinForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
    if (!name) {
      ui.joinError.textContent = "Type a name to join.";
      ui.name.focus();
      return;
    }
    if (!settings.url) {
      ui.joinError.textContent = "This page was not served by the chat server: add "
        + "?server=ws://127.0.0.1:2466/hetu/dev to its address.";
      return;
    }
    me = { id: userIdOf(name), name };
    ui.joinError.textContent = "";
    ui.joinButton.disabled = true;
    ui.name.disabled = true;
    setStatus("connecting");
    messages.reset(me.id);
    const joining = new ChatRoom(settings, me, view);
    try {
      await joining.join();
    } catch (err) {
      showJoin(err.message);
      return;
    }
    room = joining;
    ui.sendError.textContent = "";
    ui.join.hidden = true;
    ui.room.hidden = false;
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.text.focus();
  });

  ui.sendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text || room === null) return;
    ui.text.value = "";
    ui.sendError.textContent = "";
    try {
      await room.send(text);
    } catch (err) {
      if (!ui.text.value) ui.text.value = text; // give it back to send again
      ui.sendError.textContent = `Not sent: ${err.message}`;
    }
  });

  ui.leave.addEventListener("click", async () => {
    if (room === null) return;
    const leaving = room;
    room = null;
    ui.leave.disabled = true;
    await leaving.leave();
    ui.leave.disabled = false;
    showJoin();
  });
}

main();
