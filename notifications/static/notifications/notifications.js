// The bell, live: plain JavaScript, no build step. See docs/notifications.md.
// Room pages share their room socket (rooms/static/rooms/socket.js re-emits its frames as "chat:frame" events);
// every other page opens /ws/notifications/ and re-emits its frames the same way, so other
// modules (rooms/room_list.js) listen to one event on any page. Text is only ever textContent.
(function () {
  "use strict";

  const bell = document.getElementById("notifications-bell");
  if (!bell) return;
  const countNode = document.getElementById("notifications-count");
  const list = document.getElementById("notification-list");
  const markAll = document.getElementById("mark-all-read");
  const desktopButton = document.getElementById("enable-desktop-notifications");
  let toasts = null;

  function setUnread(value) {
    const unread = Math.max(0, Number(value) || 0);
    countNode.textContent = String(unread);
    countNode.dataset.unread = String(unread);
    bell.classList.toggle("has-unread", unread > 0);
    bell.setAttribute("aria-label", "Notifications: " + unread + " unread");
    if (markAll) markAll.disabled = unread === 0;
  }

  // Only relative and http(s) links are followed, whatever the server sent.
  function safeHref(link) {
    if (!link) return "";
    try {
      const url = new URL(link, location.href);
      if (url.protocol === "http:" || url.protocol === "https:") return url.href;
    } catch (err) {
      // not a URL: no link
    }
    return "";
  }

  function textNode(frame) {
    const href = safeHref(frame.link);
    const node = document.createElement(href ? "a" : "span");
    node.className = "text";
    node.textContent = frame.text;
    if (href) node.href = href;
    return node;
  }

  function showToast(frame) {
    if (!toasts) {
      toasts = document.createElement("div");
      toasts.id = "notification-toasts";
      toasts.className = "notification-toasts";
      toasts.setAttribute("role", "status");
      toasts.setAttribute("aria-live", "polite");
      document.body.append(toasts);
    }
    const toast = document.createElement("div");
    toast.className = "notification-toast level-" + frame.level;
    toast.append(textNode(frame));
    toasts.append(toast);
    while (toasts.children.length > 3) toasts.firstElementChild.remove();
    setTimeout(function () { toast.remove(); }, 8000);
  }

  function showDesktop(frame) {
    if (document.visibilityState !== "hidden") return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    // One tag per notification: several hidden tabs of the same user show it once.
    const shown = new Notification("Chat", { body: frame.text, tag: "notification-" + frame.id });
    shown.addEventListener("click", function () {
      window.focus();
      const href = safeHref(frame.link);
      if (href) location.href = href;
      shown.close();
    });
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function addToList(frame) {
    if (!list || list.querySelector('li[data-id="' + Number(frame.id) + '"]')) return;
    const empty = list.querySelector("li.empty");
    if (empty) empty.remove();
    const item = document.createElement("li");
    item.className = "notification unread level-" + frame.level;
    item.dataset.id = String(frame.id);
    const time = document.createElement("time");
    time.dateTime = frame.created;
    time.textContent = new Date(frame.created).toLocaleString();
    item.append(time, document.createTextNode(" "), textNode(frame));
    const token = csrfToken();
    if (token) {
      const form = document.createElement("form");
      form.method = "post";
      form.action = bell.getAttribute("href") + Number(frame.id) + "/read/";
      form.className = "inline mark-read";
      const hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "csrfmiddlewaretoken";
      hidden.value = token;
      const button = document.createElement("button");
      button.type = "submit";
      button.className = "link";
      button.textContent = "Mark read";
      form.append(hidden, button);
      item.append(document.createTextNode(" "), form);
    }
    list.prepend(item);
  }

  function markRead(ids) {
    if (!list) return;
    for (const item of list.querySelectorAll("li.unread")) {
      if (ids === null || ids.includes(Number(item.dataset.id))) {
        item.classList.remove("unread");
        const form = item.querySelector("form.mark-read");
        if (form) form.remove();
      }
    }
  }

  function onFrame(frame) {
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "notification") {
      setUnread(frame.unread);
      addToList(frame);
      showToast(frame);
      showDesktop(frame);
    } else if (frame.type === "notification.read") {
      setUnread(frame.unread);
      markRead(Array.isArray(frame.ids) ? frame.ids.map(Number) : null);
    } else if (frame.type === "notification.unread") {
      setUnread(frame.unread);
    }
  }

  // Events may have been missed while a room socket was away: ask for the count again.
  function refreshCount() {
    fetch(bell.dataset.unreadUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) setUnread(data.unread); })
      .catch(function () {});
  }

  function ownSocket() {
    let attempt = 0;
    let stopped = false;
    let socket = null;

    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + "/ws/notifications/");
      socket.addEventListener("open", function () {
        attempt = 0;
        document.body.dataset.notificationsState = "open";
      });
      socket.addEventListener("message", function (event) {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (err) {
          return; // a frame that is not JSON is ignored
        }
        onFrame(frame);
        // Other modules of the page (the rooms list) hear this socket as room pages' scripts
        // hear socket.js's. No loop: this socket is opened only on pages without a room socket,
        // and there the bell does not listen to "chat:frame" (see the end of this file).
        document.dispatchEvent(new CustomEvent("chat:frame", { detail: frame }));
      });
      socket.addEventListener("close", function (event) {
        socket = null;
        document.body.dataset.notificationsState = "closed";
        if (event.code === 4401) {
          stopped = true; // logged out: the page reload will log in again
          return;
        }
        // Exponential backoff with full jitter, so a restarted server is not hit by every tab at once.
        const ceiling = Math.min(30000, 1000 * 2 ** attempt);
        attempt += 1;
        setTimeout(connect, Math.round(ceiling / 2 + Math.random() * (ceiling / 2)));
      });
    }

    window.addEventListener("online", function () {
      if (!socket && !stopped) {
        attempt = 0;
        connect();
      }
    });
    connect();
  }

  function desktopSetup() {
    if (!desktopButton || !("Notification" in window)) return;
    const update = function () {
      desktopButton.hidden = Notification.permission !== "default";
    };
    // Permission is asked only when the user clicks, never on page load.
    desktopButton.addEventListener("click", function () {
      Promise.resolve(Notification.requestPermission()).then(update, update);
    });
    update();
  }

  desktopSetup();
  if (document.getElementById("chat-config")) {
    document.addEventListener("chat:frame", function (event) { onFrame(event.detail); });
    document.addEventListener("chat:open", refreshCount);
  } else {
    ownSocket();
  }
})();
