// Drives the chat page (examples/chat/web) in headless Chromium for test_web_chat.py.
//
//   node web_chat.mjs <scenario> '<json options>'
//
// options: browser (Chromium's path), page (the page's URL) and what the scenario needs.
// The scenario waits for what a person would see, then prints one JSON line: its findings,
// or {"error": ...} when something did not show up in time.
import { chromium } from "playwright-core";

const WAIT_MS = 10_000;
const VIEWPORT = { width: 720, height: 500 };

// Playwright starts Chromium headless with a fresh profile in a temporary directory, and
// without background networking, component updates, sync or the first-run page.
const CHROMIUM_FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** A browser with one context (its own cookies, storage and connections) per person. */
async function launch(options) {
  const browser = await chromium.launch({ executablePath: options.browser, headless: true, args: CHROMIUM_FLAGS });
  const problems = [];
  const open = async (url = options.page) => {
    const context = await browser.newContext({ viewport: VIEWPORT, locale: "en-US" });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
    await page.goto(url);
    return page;
  };
  return { browser, open, problems };
}

// -- what a person does and sees --------------------------------------------------------------

async function join(page, name) {
  const field = page.getByLabel("Your name");
  await field.fill(name);
  await field.press("Enter");
  await page.locator('#status[data-state="online"]').waitFor();
}

async function say(page, text) {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
}

const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

function messageNamed(page, text) {
  return page.locator("#messages li").filter({ has: page.locator(".text", { hasText: exactly(text) }) });
}

async function waitForMessage(page, text) {
  await messageNamed(page, text).last().waitFor();
}

async function waitForUser(page, name, online = true) {
  await page.locator(`#users li[data-name="${name}"]`).waitFor({ state: online ? "attached" : "detached" });
}

const statusOf = (page) => page.locator("#status").evaluate((node) => ({
  state: node.dataset.state, text: node.textContent.trim().replace(/\s+/g, " "),
}));
const onlineNames = (page) => page.locator("#users .name").allTextContents();
const messageTexts = (page) => page.locator("#messages li .text").allTextContents();

/** Two screenshots side by side, each under a caption, as one PNG. */
async function sideBySide(browser, shots, path) {
  const context = await browser.newContext({ viewport: { width: VIEWPORT.width * 2 + 72, height: VIEWPORT.height + 84 } });
  const page = await context.newPage();
  const frames = shots.map(({ caption, png }) => `
    <figure>
      <figcaption>${caption}</figcaption>
      <img src="data:image/png;base64,${png.toString("base64")}" width="${VIEWPORT.width}" height="${VIEWPORT.height}">
    </figure>`).join("");
  await page.setContent(`<!doctype html><style>
    body { margin: 0; padding: 20px 24px; display: flex; gap: 24px; background: #2b2f3a; font: 13px system-ui, sans-serif; }
    figure { margin: 0; border-radius: 10px; overflow: hidden; box-shadow: 0 8px 24px rgb(0 0 0 / 35%); }
    figcaption { padding: 8px 12px; background: #e9ebf0; color: #3a3f4b; }
    img { display: block; }
  </style>${frames}`);
  await page.screenshot({ path });
  await context.close();
}

// -- scenarios ---------------------------------------------------------------------------------

const scenarios = {
  /** Two people join, see each other online and talk; the screenshot is taken mid-conversation. */
  async conversation({ open, browser }, options) {
    const alice = await open();
    await join(alice, "alice");
    const bob = await open();
    await join(bob, "bob");
    await waitForUser(alice, "bob");
    await waitForUser(bob, "alice");
    const seen = { aliceSeesOnline: await onlineNames(alice), bobSeesOnline: await onlineNames(bob) };

    const lines = [
      [alice, bob, "hi bob, are you there?"],
      [bob, alice, "hello alice! your message came in live"],
      [alice, bob, "the server pushes every new row to both pages"],
      [bob, alice, "and the list scrolls by itself"],
    ];
    for (const [from, to, text] of lines) {
      await say(from, text);
      await waitForMessage(to, text);
      await waitForMessage(from, text);
    }
    const last = lines.at(-1)[2];
    const bottom = await alice.locator("#messages").evaluate((list) => ({
      lastText: list.lastElementChild.querySelector(".text").textContent,
      atBottom: list.scrollHeight - list.scrollTop - list.clientHeight < 2,
    }));
    const styleOf = (locator) => locator.evaluate((node) => {
      const style = getComputedStyle(node);
      return { fontStyle: style.fontStyle, background: style.backgroundColor, className: node.className };
    });
    const systemMessage = await styleOf(messageNamed(bob, "alice joined the chat").last());
    const chatMessage = await styleOf(messageNamed(bob, "hi bob, are you there?").last());

    const path = new URL(options.page).pathname;
    await sideBySide(browser, [
      { caption: `alice — ${path}`, png: await alice.screenshot() },
      { caption: `bob — ${path}`, png: await bob.screenshot() },
    ], options.screenshot);

    return {
      ...seen,
      aliceStatus: await statusOf(alice),
      bobStatus: await statusOf(bob),
      aliceTexts: await messageTexts(alice),
      bobTexts: await messageTexts(bob),
      last, bottom, systemMessage, chatMessage,
      sendBoxAfterSending: await alice.getByLabel("Message", { exact: true }).inputValue(),
      focused: await alice.evaluate(() => document.activeElement?.id),
    };
  },

  /** The leave button: the other page sees the user go offline and a "left" message. */
  async leave({ open }) {
    const carol = await open();
    await join(carol, "carol");
    const dave = await open();
    await join(dave, "dave");
    await waitForUser(carol, "dave");
    await dave.getByRole("button", { name: "Leave the chat" }).click();
    await waitForUser(carol, "dave", false);
    await waitForMessage(carol, "dave left the chat");
    await dave.locator('#status[data-state="offline"]').waitFor();
    await carol.waitForTimeout(1000); // on_disconnect runs after user_quit: time for a second line, were it written
    return {
      carolSeesOnline: await onlineNames(carol),
      leftMessages: await messageNamed(carol, "dave left the chat").count(),
      daveStatus: await statusOf(dave),
      daveSeesJoinForm: await dave.getByLabel("Your name").isVisible(),
      daveRoomHidden: await dave.locator("#room").isHidden(),
    };
  },

  /** Closing the tab: on_disconnect marks the user offline for the others. */
  async closeTab({ open }) {
    const erin = await open();
    await join(erin, "erin");
    const frank = await open();
    await join(frank, "frank");
    await waitForUser(erin, "frank");
    await frank.context().close();
    await waitForUser(erin, "frank", false);
    await waitForMessage(erin, "frank left the chat");
    return { erinSeesOnline: await onlineNames(erin) };
  },

  /** Nothing listens at the server address: joining says so. */
  async unreachable({ open }) {
    const page = await open();
    await page.getByLabel("Your name").fill("grace");
    await page.getByRole("button", { name: "Join" }).click();
    const error = page.locator("#join-error");
    await error.filter({ hasText: /\S/ }).waitFor();
    return {
      errorText: await error.textContent(),
      role: await error.getAttribute("role"),
      status: await statusOf(page),
      roomHidden: await page.locator("#room").isHidden(),
      nameEditable: await page.getByLabel("Your name").isEditable(),
    };
  },

  /** The same name in a second window takes the user over; the first window stops, for good. */
  async joinedElsewhere({ open }) {
    const first = await open();
    await join(first, "heidi");
    const second = await open();
    await join(second, "heidi");
    const error = first.locator("#join-error");
    await error.filter({ hasText: /\S/ }).waitFor();
    await second.waitForTimeout(2000); // a first window reconnecting would take the user back
    return {
      firstError: await error.textContent(),
      firstStatus: await statusOf(first),
      secondStatus: await statusOf(second),
      secondSeesOnline: await onlineNames(second),
    };
  },
};

async function main() {
  const [name, json] = process.argv.slice(2);
  const options = JSON.parse(json);
  const scenario = scenarios[name];
  if (scenario === undefined) throw new Error(`no scenario ${name}; there are ${Object.keys(scenarios)}`);
  const session = await launch(options);
  try {
    const found = await scenario(session, options);
    console.log(JSON.stringify({ ...found, problems: session.problems }));
  } finally {
    await session.browser.close();
  }
}

main().catch((err) => {
  console.log(JSON.stringify({ error: `${err.name}: ${err.message}` }));
  process.exitCode = 1;
});
