// Scroll-back and forward pages over the room socket (docs/protocol.md, "History"): older
// pages load as the top of the list comes into view, keeping what the reader sees in place;
// newer pages load at the bottom when the page opened in the past (?around= or the first
// unread message). Pages are cut by seq, so no message is missed or shown twice.

import * as view from "./render.js";

const EDIT_MEMORY = 500;

export function createHistory({ list, ctx, room, pageSize, hasOlder, hasNewer, onPage }) {
  let older = hasOlder;
  let newer = hasNewer;
  let waiting = null; // "before" or "after": the page asked for and not come yet
  // Live changes to messages this page does not show yet: a page asked for before the change
  // may arrive after it, with the message as it was.
  const gone = new Set();
  const edits = new Map();
  const held = new Map(); // new messages that came live while the newest page is not loaded

  const start = document.createElement("p");
  start.id = "history-start";
  start.className = "history-edge";
  start.setAttribute("role", "status");
  list.before(start);
  const end = document.createElement("p");
  end.id = "history-end";
  end.className = "history-edge";
  list.after(end);

  function showEdges() {
    start.textContent = older ? "Loading older messages…" : "This is the first message of the room.";
    start.dataset.more = String(older);
    end.hidden = !newer;
    end.textContent = newer ? "Loading newer messages…" : "";
  }

  function stored() {
    return list.querySelectorAll("li.message[data-seq]:not(.pending)");
  }

  function nearView(node) {
    const box = node.getBoundingClientRect();
    return box.bottom >= -200 && box.top <= window.innerHeight + 200;
  }

  /** Ask for the next page if an edge with more beyond it is in view. */
  function check() {
    if (waiting) return;
    const items = stored();
    if (older && nearView(start)) {
      const first = items.length ? Number(items[0].dataset.seq) : Number.MAX_SAFE_INTEGER;
      if (room() && room().history({ before: first }, pageSize)) waiting = "before";
    } else if (newer && nearView(end)) {
      const last = items.length ? Number(items[items.length - 1].dataset.seq) : 0;
      if (room() && room().history({ after: last }, pageSize)) waiting = "after";
    }
  }

  function nodeOf(msg) {
    const edit = edits.get(msg.id);
    if (edit) {
      msg.body = edit.body;
      msg.edited = edit.edited;
    }
    return view.messageNode(msg, ctx);
  }

  function fresh(msg) {
    return !gone.has(msg.id) && !view.findById(list, msg.id);
  }

  function prependOlder(messages) {
    const items = stored();
    const anchor = items.length ? items[0] : null;
    const offset = anchor ? anchor.getBoundingClientRect().top : 0;
    const fragment = document.createDocumentFragment();
    for (const msg of messages) if (fresh(msg)) fragment.append(nodeOf(msg));
    list.prepend(fragment);
    // Keep the message the reader was looking at where it was on the screen.
    if (anchor) window.scrollBy(0, anchor.getBoundingClientRect().top - offset);
  }

  function appendNewer(messages) {
    for (const msg of messages) if (fresh(msg)) view.insertBySeq(list, nodeOf(msg));
    if (!newer) {
      // The newest page is here: the messages that came live meanwhile follow it.
      const rest = [...held.values()].sort((a, b) => a.seq - b.seq);
      held.clear();
      for (const msg of rest) if (fresh(msg)) view.insertBySeq(list, nodeOf(msg));
    }
  }

  function onHistory(page) {
    const kind = page.before !== null ? "before" : "after";
    if (waiting !== kind) return;
    waiting = null;
    if (kind === "before") {
      older = page.more;
      prependOlder(page.messages);
    } else {
      newer = page.more;
      appendNewer(page.messages);
    }
    showEdges();
    onPage();
    requestAnimationFrame(check);
  }

  const observer = new IntersectionObserver(check, { rootMargin: "200px 0px" });
  observer.observe(start);
  observer.observe(end);
  window.addEventListener("scroll", check, { passive: true });
  showEdges();

  return {
    check: check,
    onHistory: onHistory,
    /** Whether a new live message belongs on the page now (false: a later page brings it). */
    takesLive: function (msg) {
      if (!newer) return true;
      held.set(msg.id, msg);
      return false;
    },
    /** A live deletion or edit of a message the page may not show yet. */
    forget: function (id) {
      gone.add(id);
      held.delete(id);
    },
    noteEdit: function (change) {
      edits.set(change.id, change);
      if (edits.size > EDIT_MEMORY) edits.delete(edits.keys().next().value);
    },
    reset: function () {
      waiting = null; // a page asked for on a socket that closed never comes
    },
  };
}
