// Live chat of one room page: plain JavaScript, no build step. See docs/protocol.md.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("message-input");
  const status = document.getElementById("status");
  const errorBox = document.getElementById("composer-error");

  const seen = new Set(); // seqs rendered, so every message shows once
  let lastSeq = config.lastSeq; // highest seq with no gap below it
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let stopped = false;
  let syncing = false;
  const pending = []; // {body, node}: written while disconnected, sent on reconnect
  let lastSent = "";

  for (const node of list.querySelectorAll("li[data-seq]")) {
    seen.add(Number(node.dataset.seq));
  }

  function setStatus(state, text) {
    status.className = "status status-" + state;
    status.textContent = text;
    document.body.dataset.chatState = state;
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function timeLabel(iso) {
    const date = new Date(iso);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messageNode(msg) {
    const item = document.createElement("li");
    item.className = "message" + (msg.user === config.username ? " own" : "");
    item.dataset.seq = String(msg.seq);
    item.id = "message-" + msg.seq;
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = msg.user;
    const time = document.createElement("time");
    time.dateTime = msg.created;
    time.textContent = timeLabel(msg.created);
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = msg.body;
    item.append(author, time, body);
    return item;
  }

  function isNearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }

  function render(msg) {
    if (seen.has(msg.seq)) return;
    seen.add(msg.seq);
    const stick = isNearBottom();
    const node = messageNode(msg);
    // Insert in seq order: messages can arrive out of order after a sync.
    let before = null;
    for (let child = list.lastElementChild; child; child = child.previousElementSibling) {
      if (!child.dataset.seq) continue;
      if (Number(child.dataset.seq) < msg.seq) break;
      before = child;
    }
    const firstPending = list.querySelector("li.pending");
    list.insertBefore(node, before || firstPending);
    if (stick) window.scrollTo(0, document.body.scrollHeight);
  }

  function advance() {
    while (seen.has(lastSeq + 1)) lastSeq += 1;
  }

  function requestSync() {
    if (syncing || !socket || socket.readyState !== WebSocket.OPEN) return;
    syncing = true;
    socket.send(JSON.stringify({ type: "sync", after: lastSeq }));
  }

  function onFrame(frame) {
    if (frame.type === "message") {
      render(frame);
      advance();
      // A seq beyond the next one means frames were missed: fetch them from the database.
      if (frame.seq > lastSeq) requestSync();
    } else if (frame.type === "synced") {
      // Everything stored up to last_seq has now been sent; a seq still missing below it was
      // deleted, so it is not asked for again.
      syncing = false;
      lastSeq = Math.max(lastSeq, frame.last_seq);
      advance();
      if (frame.more) requestSync();
    } else if (frame.type === "error") {
      showError(frame.detail);
      if (lastSent && !input.value) input.value = lastSent;
    }
  }

  function flushPending() {
    while (pending.length && socket && socket.readyState === WebSocket.OPEN) {
      const item = pending.shift();
      socket.send(JSON.stringify({ type: "message", body: item.body }));
      item.node.remove();
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + location.host + "/ws/rooms/" + encodeURIComponent(config.slug) + "/?after=" + lastSeq;
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");
    syncing = true; // the connect itself catches up; a synced frame ends it
    socket = new WebSocket(url);
    socket.addEventListener("open", function () {
      attempt = 0;
      setStatus("open", "Connected");
      document.dispatchEvent(new CustomEvent("chat:open"));
      flushPending();
    });
    socket.addEventListener("message", function (event) {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      onFrame(frame);
      // Other scripts of the page (the notifications bell) share this socket.
      document.dispatchEvent(new CustomEvent("chat:frame", { detail: frame }));
    });
    socket.addEventListener("close", function (event) {
      socket = null;
      syncing = false;
      if (event.code === 4401) {
        stopped = true;
        setStatus("closed", "Logged out: reload to log in again");
        return;
      }
      if (event.code === 4404) {
        stopped = true;
        setStatus("closed", "This room no longer exists");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (stopped) return;
    // Exponential backoff with full jitter, so a restarted server is not hit by every tab at once.
    const ceiling = Math.min(15000, 500 * 2 ** attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    attempt += 1;
    setStatus("offline", "Offline: reconnecting in " + Math.ceil(delay / 1000) + " s");
    retryTimer = setTimeout(connect, delay);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const body = input.value.trim();
    if (!body) return;
    if (body.length > config.maxLength) {
      showError("Messages are limited to " + config.maxLength + " characters.");
      return;
    }
    showError("");
    input.value = "";
    lastSent = body;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", body: body }));
    } else {
      // Never drop what the user wrote: keep it visibly queued until the socket is back.
      const node = document.createElement("li");
      node.className = "message own pending";
      const note = document.createElement("span");
      note.className = "author";
      note.textContent = "Not sent yet (waiting for connection)";
      const text = document.createElement("span");
      text.className = "body";
      text.textContent = body;
      node.append(note, text);
      list.append(node);
      pending.push({ body: body, node: node });
    }
  });

  window.addEventListener("online", function () {
    if (!socket && !stopped) {
      attempt = 0;
      connect();
    }
  });

  window.scrollTo(0, document.body.scrollHeight);
  connect();
})();
