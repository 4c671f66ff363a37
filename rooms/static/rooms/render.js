// Message nodes: building and updating them. Text is only ever set with textContent; the one
// exception is a message's formatted body, the ``html`` the server rendered and sanitised
// (rooms/formatting.py), parsed in an inert <template> and checked again by ``safeFragment``.
// This module knows the page's markup (rooms/templates/room/detail.html), not the wire.

export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
const EXCERPT_LENGTH = 100; // as rooms/events.py cuts a reply's excerpt of the shown text

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(className, text, label) {
  const node = element("button", className, text);
  node.type = "button";
  if (label) node.setAttribute("aria-label", label);
  return node;
}

export function excerpt(text) {
  const flat = text.split(/\s+/).filter(Boolean).join(" ");
  return flat.length > EXCERPT_LENGTH ? flat.slice(0, EXCERPT_LENGTH - 1) + "…" : flat;
}

function timeLabel(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function authorNode(user, ctx) {
  if (user === ctx.username) return element("span", "author", user);
  // Someone else's name opens the direct conversation with them.
  const link = element("a", "author", user);
  link.href = "/dm/" + encodeURIComponent(user) + "/";
  link.title = "Message " + user + " directly";
  return link;
}

function quoteNode(reply) {
  const quote = button("quote");
  quote.dataset.parentId = String(reply.id);
  quote.dataset.parentSeq = String(reply.seq);
  quote.append(element("span", "quote-author", reply.user), " ", element("span", "quote-text"));
  setQuote(quote, reply.deleted ? null : reply.excerpt, reply.user);
  return quote;
}

/** Show a quote's excerpt, or that its parent was deleted (``text`` null). */
export function setQuote(quote, text, user) {
  const name = user || quote.querySelector(".quote-author").textContent;
  quote.querySelector(".quote-text").textContent = text === null ? "Message deleted" : text;
  quote.classList.toggle("quote-deleted", text === null);
  quote.disabled = text === null;
  quote.setAttribute(
    "aria-label",
    text === null ? "Reply to a deleted message" : "Reply to " + name + ": " + text + ". Show it",
  );
}

/** The node of a stored message (``msg`` as socket.js hands it over). */
export function messageNode(msg, ctx) {
  const item = element("li", "message");
  item.id = "message-" + msg.seq;
  item.dataset.seq = String(msg.seq);
  item.dataset.id = String(msg.id);
  item.dataset.author = msg.user;
  if (msg.clientId) item.dataset.clientId = msg.clientId;
  item.classList.toggle("own", msg.user === ctx.username);
  const time = element("time", "", timeLabel(msg.created));
  time.dateTime = msg.created;
  const edited = element("span", "edited", "(edited)");
  edited.hidden = true;
  const meta = element("span", "meta");
  meta.append(authorNode(msg.user, ctx), " ", time, " ", edited);
  item.append(meta, " ");
  if (msg.reply) item.append(quoteNode(msg.reply));
  item.append(element("div", "body"), element("span", "reactions"));
  setBody(item, msg);
  setReactions(item, msg.reactions, ctx.username);
  decorate(item, ctx);
  return item;
}

/** A message written here and not stored yet; ``entry`` is its outbox entry. */
export function pendingNode(entry, ctx) {
  const item = element("li", "message own pending");
  item.dataset.clientId = entry.clientId;
  const meta = element("span", "meta");
  meta.append(element("span", "author", ctx.username), " ", element("span", "send-state"));
  item.append(meta, " ");
  if (entry.reply) item.append(quoteNode(entry.reply));
  item.append(element("div", "body", entry.body));
  return item;
}

/** Say where a pending message is: sending, waiting for the connection, or refused. */
export function setSendState(item, text, failed) {
  item.querySelector(".send-state").textContent = text;
  item.classList.toggle("failed", Boolean(failed));
  const actions = item.querySelector(".actions");
  if (failed && !actions) {
    const bar = element("span", "actions");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Message not sent");
    bar.append(button("retry-button", "Retry"), button("discard-button", "Discard"));
    item.append(bar);
  } else if (!failed && actions) {
    actions.remove();
  }
}

// What a formatted body may contain: the Markdown subset of rooms/formatting.py.
const TAGS = new Set([
  "P", "BR", "STRONG", "EM", "S", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A",
]);
const SAFE_HREF = /^(https?|mailto):/i;

/** ``html`` parsed inert, with anything outside the subset turned back into text. */
function safeFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  for (const node of [...template.content.querySelectorAll("*")]) {
    if (!TAGS.has(node.tagName)) {
      node.replaceWith(document.createTextNode(node.textContent));
      continue;
    }
    for (const name of node.getAttributeNames()) {
      const keep =
        (name === "href" && SAFE_HREF.test(node.getAttribute(name))) ||
        name === "rel" ||
        name === "start";
      if (!keep) node.removeAttribute(name);
    }
  }
  return template.content;
}

/** Show a stored message's body ({body, html, edited}); the text the user wrote stays on the
 * node (``bodyOf``) for editing, replies and the delete dialog. */
export function setBody(item, { body, html, edited }) {
  const box = item.querySelector(".body");
  box.dataset.body = body;
  if (html) box.replaceChildren(safeFragment(html));
  else box.textContent = body;
  const mark = item.querySelector(".edited");
  mark.hidden = !edited;
  if (edited) mark.title = "Edited " + new Date(edited).toLocaleString();
}

/** The text that ``html`` shows (what a reply quotes), before it is cut to an excerpt. */
export function plainText(html) {
  return safeFragment(html).textContent;
}

/** The text the user wrote (a pending message holds it as its text). */
export function bodyOf(item) {
  const box = item.querySelector(".body");
  return box.dataset.body ?? box.textContent;
}

/** Replace a message's reaction chips with ``state`` ({emoji: [username, ...]}). */
export function setReactions(item, state, username) {
  const box = item.querySelector(".reactions");
  box.replaceChildren();
  for (const [emoji, users] of Object.entries(state || {})) {
    if (!users.length) continue;
    const mine = users.includes(username);
    const chip = button("reaction" + (mine ? " mine" : ""));
    chip.dataset.emoji = emoji;
    chip.dataset.users = users.join(",");
    chip.setAttribute("aria-pressed", String(mine));
    chip.title = users.join(", ");
    chip.setAttribute("aria-label", emoji + " " + users.length + ": " + users.join(", "));
    chip.append(emoji + " ", element("span", "count", String(users.length)));
    box.append(chip);
  }
}

/** The reactions a node shows, as {emoji: [username, ...]}. */
export function readReactions(item) {
  const state = {};
  for (const chip of item.querySelectorAll(".reactions .reaction")) {
    state[chip.dataset.emoji] = chip.dataset.users ? chip.dataset.users.split(",") : [];
  }
  return state;
}

/** Add the action buttons a stored message offers this user (server- or script-rendered). */
export function decorate(item, ctx) {
  if (item.querySelector(".actions")) return;
  const own = item.dataset.author === ctx.username;
  const bar = element("span", "actions");
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "Message actions");
  const react = button("react-button", "React", "React with an emoji");
  react.setAttribute("aria-expanded", "false");
  bar.append(button("reply-button", "Reply"), react);
  if (own) bar.append(button("edit-button", "Edit"));
  if (own || ctx.canModerate) bar.append(button("delete-button", "Delete"));
  item.append(bar);
}

/** The emoji picker, created once and moved next to the React button it opens from. */
export function pickerNode() {
  let picker = document.getElementById("emoji-picker");
  if (picker) return picker;
  picker = element("span", "emoji-picker");
  picker.id = "emoji-picker";
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "Pick a reaction");
  for (const emoji of EMOJI) {
    const choice = button("emoji-choice", emoji, "React with " + emoji);
    choice.dataset.emoji = emoji;
    picker.append(choice);
  }
  return picker;
}

export function findById(list, id) {
  return list.querySelector('li[data-id="' + Number(id) + '"]');
}

/** The node of a message by its client id: the pending one, or else the stored one. */
export function findByClientId(list, clientId, pendingOnly) {
  let found = null;
  for (const item of list.querySelectorAll("li[data-client-id]")) {
    if (item.dataset.clientId !== clientId) continue;
    if (item.classList.contains("pending")) return item;
    if (!pendingOnly) found = item;
  }
  return found;
}

/** Insert a stored message's node in seq order, before the pending ones. */
export function insertBySeq(list, item) {
  const seq = Number(item.dataset.seq);
  let before = list.querySelector("li.pending");
  for (let child = list.lastElementChild; child; child = child.previousElementSibling) {
    if (!child.dataset.seq) continue;
    if (Number(child.dataset.seq) < seq) break;
    before = child;
  }
  list.insertBefore(item, before);
}

/** Quotes of replies to message ``id``. */
export function quotesOf(list, id) {
  return list.querySelectorAll('.quote[data-parent-id="' + Number(id) + '"]');
}
