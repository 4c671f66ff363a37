// The conversations sidebar, live on every page: unread counts and activity order from the
// frames of the page's socket (re-emitted as "chat:frame" by socket.js on room pages and by
// notifications.js elsewhere), and the menu button that folds it at phone width.
// Text is only ever set with textContent.

const sidebar = document.getElementById("sidebar");
const list = document.getElementById("conversation-list");
const toggle = document.getElementById("sidebar-toggle");
// On a room page the socket is the room's own: its room's new messages come as "message"
// frames (the server sends no "room.activity" for them), the others' as "room.activity".
const configNode = document.getElementById("chat-config");
const current = configNode ? JSON.parse(configNode.textContent) : null;
let currentSeq = current ? current.lastSeq : 0;

function entryOf(slug) {
  if (typeof slug !== "string") return null;
  for (const item of list.children) {
    if (item.dataset.slug === slug) return item;
  }
  return null;
}

function setUnread(item, value) {
  const unread = Math.max(0, Number(value) || 0);
  const link = item.querySelector("a");
  const count = item.querySelector(".unread-count");
  link.dataset.unread = String(unread);
  item.classList.toggle("unread", unread > 0);
  count.hidden = unread === 0;
  count.lastChild.textContent = String(unread);
}

function entryAdd(room) {
  if (!room || typeof room.slug !== "string" || !room.slug || entryOf(room.slug)) return;
  const empty = list.querySelector("li.empty");
  if (empty) empty.remove();
  const item = document.createElement("li");
  item.className = "conversation kind-" + String(room.kind || "public");
  item.dataset.slug = room.slug;
  const link = document.createElement("a");
  link.href = "/rooms/" + encodeURIComponent(room.slug) + "/";
  const title = document.createElement("span");
  title.className = "conversation-title";
  title.textContent = room.name || room.slug;
  const count = document.createElement("span");
  count.className = "unread-count";
  const label = document.createElement("span");
  label.className = "visually-hidden";
  label.textContent = "unread: ";
  count.append(label, document.createTextNode("0"));
  link.append(title, " ", count);
  item.append(link);
  list.prepend(item);
  setUnread(item, 0);
}

/** A message in the room this page shows: a new one (not a catch-up of an older one) moves the
 * room up and, by someone else, counts until the page marks it read. */
function currentMessage(frame) {
  const item = entryOf(current.slug);
  if (!item || !Number.isInteger(frame.seq) || frame.seq <= currentSeq) return;
  currentSeq = frame.seq;
  if (frame.user !== current.username) {
    setUnread(item, Number(item.querySelector("a").dataset.unread) + 1);
  }
  if (list.firstElementChild !== item) list.prepend(item);
}

function onFrame(frame) {
  if (!frame || typeof frame !== "object") return;
  if (frame.type === "message" && current && frame.room === current.slug) {
    currentMessage(frame);
    return;
  }
  if (frame.type === "room.added") {
    entryAdd(frame.room);
    return;
  }
  const item = entryOf(frame.room);
  if (!item) return;
  if (frame.type === "read" || frame.type === "room.unread") {
    setUnread(item, frame.unread);
  } else if (frame.type === "room.activity") {
    setUnread(item, frame.unread);
    if (list.firstElementChild !== item) list.prepend(item); // latest activity first
  } else if (frame.type === "room.removed") {
    item.remove();
  }
}

if (sidebar && list) {
  document.addEventListener("chat:frame", function (event) {
    onFrame(event.detail);
  });
}

if (sidebar && toggle) {
  toggle.addEventListener("click", function () {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.classList.toggle("open", open);
    if (open) {
      const first = sidebar.querySelector("a");
      if (first) first.focus();
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
      toggle.click();
      toggle.focus();
    }
  });
}
