// The room page: wires the socket (socket.js), the message list (render.js), the composer
// (composer.js), the message buttons (actions.js), the outbox (outbox.js), who is online
// (presence.js) and who is typing (typing.js).

import { bindActions } from "./actions.js";
import { createComposer } from "./composer.js";
import { Outbox } from "./outbox.js";
import { createPresence } from "./presence.js";
import * as view from "./render.js";
import { roomSocket } from "./socket.js";
import { createTyping } from "./typing.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const list = document.getElementById("messages");
const status = document.getElementById("status");
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
    view.setBody(item, msg.body, msg.edited);
    view.setReactions(item, msg.reactions, config.username);
    const quote = item.querySelector(".quote");
    if (quote && msg.reply) view.setQuote(quote, msg.reply.deleted ? null : msg.reply.excerpt);
    return;
  }
  const stick = isNearBottom() || msg.user === config.username;
  view.insertBySeq(list, view.messageNode(msg, ctx));
  if (stick) scrollToEnd();
}

function edited(change) {
  const item = view.findById(list, change.id);
  if (!item) return;
  view.setBody(item, change.body, change.edited);
  for (const quote of view.quotesOf(list, change.id)) {
    if (!quote.classList.contains("quote-deleted")) view.setQuote(quote, view.excerpt(change.body));
  }
}

function deleted(id) {
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
      state: setStatus,
      ready: function () {
        composer.refreshPending();
        composer.pump();
      },
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
scrollToEnd();
// notifications.js (a deferred classic script) listens to "chat:frame" and "chat:open"; it has
// run by DOMContentLoaded, so no frame is dispatched before the bell can hear it.
if (document.readyState === "complete") start();
else document.addEventListener("DOMContentLoaded", start, { once: true });
