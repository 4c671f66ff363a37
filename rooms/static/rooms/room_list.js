// The rooms list, live: a room this user is added to (a private room, a new conversation)
// appears at the top without a reload. Frames come as "chat:frame" events, re-emitted by
// notifications.js from its socket. Text is only ever set with textContent.

const list = document.getElementById("room-list");
const KINDS = { public: "Public", private: "Private", direct: "Direct" };

function listed(slug) {
  for (const item of list.children) {
    if (item.dataset.slug === slug) return true;
  }
  return false;
}

// Only a link to this site, whatever the frame says.
function roomHref(room) {
  try {
    const url = new URL(room.url, location.href);
    if (url.origin === location.origin) return url.pathname;
  } catch (err) {
    // not a URL: built from the slug below
  }
  return "/rooms/" + encodeURIComponent(room.slug) + "/";
}

function roomAdd(room) {
  if (!room || typeof room.slug !== "string" || !room.slug) return;
  if (!Object.hasOwn(KINDS, room.kind) || listed(room.slug)) return;
  const empty = list.querySelector("li.empty");
  if (empty) empty.remove();
  const item = document.createElement("li");
  item.className = "room-item kind-" + room.kind;
  item.dataset.slug = room.slug;
  const badge = document.createElement("span");
  badge.className = "kind kind-" + room.kind;
  badge.textContent = KINDS[room.kind];
  const link = document.createElement("a");
  link.href = roomHref(room);
  link.textContent = room.name || room.slug;
  const note = document.createElement("small");
  note.textContent = "added just now";
  item.append(badge, " ", link, " ", note);
  list.prepend(item);
}

if (list) {
  document.addEventListener("chat:frame", function (event) {
    const frame = event.detail;
    if (frame && frame.type === "room.added") roomAdd(frame.room);
  });
}
