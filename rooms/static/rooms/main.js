// The room page: wires the socket (socket.js), the message list (render.js), the composer
// (composer.js), the message buttons (actions.js), the outbox (outbox.js), older and newer
// pages (history.js), read markers (reading.js), who is online (presence.js) and who is typing
// (typing.js).

import { bindActions } from "./actions.js";
import { createComposer } from "./composer.js";
import { createHistory } from "./history.js";
import { Outbox } from "./outbox.js";
import { createReader } from "./reading.js";
import { createPresence } from "./presence.js";
import * as view from "./render.js";
import { roomSocket } from "./socket.js";
import { createTyping } from "./typing.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const list = document.getElementById("messages");
const status = document.getElementById("status");
const announcer = document.getElementById("announcer");
const ctx = { username: config.username, canModerate: Boolean(config.isOwner || config.isStaff) };
const outbox = new Outbox(config.slug);
let room = null;

function isNearBottom() {
  return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
}

function scrollToEnd() {
  window.scrollTo(0, document.body.scrollHeight);
}

const composer = createComposer({
  ctx: ctx,
  list: list,
  outbox: outbox,
  room: () => room,
  maxLength: config.maxLength,
  scrollToEnd: scrollToEnd,
});
bindActions({ ctx: ctx, list: list, composer: composer, room: () => room });
const reader = createReader({
  list: list,
  room: () => room,
  username: config.username,
  lastReadSeq: config.lastReadSeq,
});
const pages = createHistory({
  list: list,
  ctx: ctx,
  room: () => room,
  pageSize: config.pageSize,
  hasOlder: config.hasOlder,
  hasNewer: config.hasNewer,
  onPage: reader.placeDivider,
});
const presence = createPresence({ username: config.username, others: config.directOthers || [] });
const typing = createTyping({ room: () => room, maxOnline: config.typingMaxOnline });

function setStatus(state, text) {
  status.className = "status status-" + state;
  status.textContent = text;
  document.body.dataset.chatState = state;
  if (state !== "open") outbox.reset();
  composer.refreshPending();
}

/** A stored message, new or in its current state: update its node or add one, never two. */
function upsert(msg) {
  if (msg.clientId && msg.user === config.username) {
    // The echo of a message sent from this tab: it replaces the pending copy.
    outbox.remove(msg.clientId);
    const pending = view.findByClientId(list, msg.clientId, true);
    if (pending) pending.remove();
  }
  const item = view.findById(list, msg.id);
  if (item) {
    view.setBody(item, msg);
    view.setReactions(item, msg.reactions, config.username);
    const quote = item.querySelector(".quote");
    if (quote && msg.reply) view.setQuote(quote, msg.reply.deleted ? null : msg.reply.excerpt);
    return;
  }
  if (!pages.takesLive(msg)) return; // the page shows the past: a newer page brings it
  const stick = isNearBottom() || msg.user === config.username;
  const node = view.messageNode(msg, ctx);
  view.insertBySeq(list, node);
  if (stick) scrollToEnd();
  if (msg.user !== config.username) {
    announce(msg.user + ": " + node.querySelector(".body").textContent);
  }
}

/** Say a new message to screen readers, once: the region holds only the latest one. */
function announce(text) {
  announcer.textContent = text.split(/\s+/).filter(Boolean).join(" ");
}

function edited(change) {
  const item = view.findById(list, change.id);
  if (!item) {
    pages.noteEdit(change);
    return;
  }
  view.setBody(item, change);
  for (const quote of view.quotesOf(list, change.id)) {
    if (!quote.classList.contains("quote-deleted")) view.setQuote(quote, view.excerpt(view.plainText(change.html)));
  }
}

function deleted(id) {
  pages.forget(id);
  const item = view.findById(list, id);
  if (item) item.remove();
  for (const quote of view.quotesOf(list, id)) view.setQuote(quote, null);
  composer.forget(id);
}

function reactions(id, state) {
  const item = view.findById(list, id);
  if (item) view.setReactions(item, state, config.username);
}

function start() {
  room = roomSocket({
    slug: config.slug,
    lastSeq: config.lastSeq,
    on: {
      state: function (state, text) {
        if (state !== "open") pages.reset();
        setStatus(state, text);
      },
      ready: function () {
        composer.refreshPending();
        composer.pump();
        reader.resume();
        pages.check();
      },
      history: pages.onHistory,
      message: function (msg) {
        upsert(msg);
        typing.stopped(msg.user);
        composer.pump();
      },
      presence: function (state) {
        presence.show(state);
        typing.online(state.count);
      },
      typing: typing.typing,
      edited: edited,
      deleted: deleted,
      reactions: reactions,
      error: composer.refused,
    },
  });
}

for (const item of list.querySelectorAll("li[data-id]")) view.decorate(item, ctx);
// Messages of an earlier visit that the server has not acknowledged: shown until stored. One
// already on the page (stored, its echo missed before a reload) needs nothing more.
for (const entry of [...outbox.entries]) {
  if (view.findByClientId(list, entry.clientId)) outbox.remove(entry.clientId);
  else composer.showEntry(entry);
}
composer.refreshPending();
openAt();

/** Where the page opens: the message of ?around= (highlighted), else the first unread
 * message (below its divider), else the end. */
function openAt() {
  if (config.around !== null) {
    let target = null;
    for (const item of list.querySelectorAll("li.message[data-seq]")) {
      target = item;
      if (Number(item.dataset.seq) >= config.around) break;
    }
    if (target) {
      target.classList.add("target", "highlight");
      target.setAttribute("aria-current", "true");
      target.tabIndex = -1;
      target.scrollIntoView({ block: "center" });
      target.focus({ preventScroll: true });
      return;
    }
  }
  const divider = reader.placeDivider();
  if (divider) divider.scrollIntoView({ block: "start" });
  else scrollToEnd();
}

document.addEventListener("chat:frame", function (event) {
  const frame = event.detail;
  if (frame && frame.type === "read" && frame.room === config.slug) reader.readElsewhere(frame.seq);
});
// notifications.js (a deferred classic script) listens to "chat:frame" and "chat:open"; it has
// run by DOMContentLoaded, so no frame is dispatched before the bell can hear it.
if (document.readyState === "complete") start();
else document.addEventListener("DOMContentLoaded", start, { once: true });
