// Read markers on the room page (docs/protocol.md, "Read markers"): a message counts as read
// once the tab is visible and the message is scrolled into view; the highest such seq goes to
// the server as a "read" frame, a moment later, and only when it moved forward. On opening,
// a "new messages" divider goes above the first unread message by someone else.

const SEND_DELAY_MS = 400;

export function createReader({ list, room, username, lastReadSeq }) {
  let sent = lastReadSeq;
  let best = lastReadSeq;
  let timer = null;
  let divider = null;
  const inView = new Set();

  function flush() {
    timer = null;
    if (best <= sent) return;
    if (room() && room().read(best)) sent = best;
  }

  function seen(seq) {
    if (seq > best) best = seq;
    if (best > sent && timer === null) timer = setTimeout(flush, SEND_DELAY_MS);
  }

  function scan() {
    if (document.visibilityState !== "visible") return;
    for (const item of inView) {
      if (item.isConnected && !item.classList.contains("pending")) seen(Number(item.dataset.seq));
    }
  }

  const observer = new IntersectionObserver(
    function (entries) {
      for (const entry of entries) {
        if (entry.isIntersecting) inView.add(entry.target);
        else inView.delete(entry.target);
      }
      scan();
    },
    // The composer covers the bottom of the window: a message behind it is not seen yet.
    { rootMargin: "0px 0px -90px 0px" },
  );

  function watch(node) {
    if (node.nodeType === 1 && node.matches("li.message[data-seq]")) observer.observe(node);
  }

  for (const item of list.querySelectorAll("li.message[data-seq]")) watch(item);
  new MutationObserver(function (records) {
    for (const record of records) {
      for (const node of record.addedNodes) watch(node);
      for (const node of record.removedNodes) {
        if (node.nodeType === 1) {
          observer.unobserve(node);
          inView.delete(node);
        }
      }
    }
  }).observe(list, { childList: true });
  document.addEventListener("visibilitychange", scan);

  /** Put the divider above the first unread message, if it is on the page and none is yet. */
  function placeDivider() {
    if (divider) return divider;
    for (const item of list.querySelectorAll("li.message[data-seq]:not(.pending)")) {
      if (Number(item.dataset.seq) > lastReadSeq && item.dataset.author !== username) {
        divider = document.createElement("li");
        divider.className = "unread-divider";
        divider.id = "unread-divider";
        // A plain list item: a list may only hold list items (axe "list"); its text says it.
        divider.textContent = "New messages";
        item.before(divider);
        break;
      }
    }
    return divider;
  }

  return {
    placeDivider: placeDivider,
    /** A read frame from another tab: no need to send what the server already has. */
    readElsewhere: function (seq) {
      if (seq > sent) sent = seq;
    },
    /** Send what waits (after a reconnect), and count what is in view now. */
    resume: function () {
      scan();
      if (timer === null) flush();
    },
  };
}
