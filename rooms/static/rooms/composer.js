// The composer: sending (through the outbox), replying and editing, with the keyboard
// shortcuts (Enter sends, Shift+Enter is a new line, Up edits your last message, Escape
// cancels).

import { newClientId } from "./outbox.js";
import * as view from "./render.js";

/**
 * ``room()`` returns the socket's API (socket.js) once it exists; ``scrollToEnd()`` keeps the
 * newest message in view.
 */
export function createComposer({ ctx, list, outbox, room, maxLength, scrollToEnd }) {
  const form = document.getElementById("composer");
  const input = document.getElementById("message-input");
  const submit = document.getElementById("composer-submit");
  const errorBox = document.getElementById("composer-error");
  const contextBox = document.getElementById("composer-context");
  const contextText = document.getElementById("composer-context-text");
  let mode = null; // {kind: "reply", reply} or {kind: "edit", id}
  let draft = ""; // what the input held before an edit started

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function post(entry) {
    return room() ? room().post(entry) : false;
  }

  function pump() {
    outbox.pump(post);
  }

  function setMode(next) {
    const editing = mode && mode.kind === "edit" ? view.findById(list, mode.id) : null;
    if (editing) editing.classList.remove("editing");
    mode = next;
    contextBox.hidden = !mode;
    submit.textContent = mode && mode.kind === "edit" ? "Save" : "Send";
    if (!mode) {
      contextText.textContent = "";
    } else if (mode.kind === "reply") {
      contextText.textContent = "Replying to " + mode.reply.user + ": " + mode.reply.excerpt;
    } else {
      contextText.textContent = "Editing your message (Escape cancels)";
      const item = view.findById(list, mode.id);
      if (item) item.classList.add("editing");
    }
  }

  function startReply(item) {
    if (mode && mode.kind === "edit") cancel();
    const reply = {
      id: Number(item.dataset.id),
      seq: Number(item.dataset.seq),
      user: item.dataset.author,
      excerpt: view.excerpt(item.querySelector(".body").textContent),
      deleted: false,
    };
    setMode({ kind: "reply", reply: reply });
    input.focus();
  }

  function startEdit(item) {
    if (!mode || mode.kind !== "edit") draft = input.value;
    setMode({ kind: "edit", id: Number(item.dataset.id) });
    input.value = view.bodyOf(item);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  function cancel() {
    if (!mode) return;
    const wasEditing = mode.kind === "edit";
    setMode(null);
    if (wasEditing) {
      input.value = draft;
      draft = "";
    }
  }

  /** A message was deleted: stop replying to or editing it. */
  function forget(id) {
    if (!mode) return;
    if (mode.kind === "edit" && mode.id === id) {
      cancel();
      showError("The message you were editing was deleted.");
    } else if (mode.kind === "reply" && mode.reply.id === id) {
      cancel();
      showError("The message you were replying to was deleted.");
    }
  }

  /** Tell every message not stored yet whether it is on its way. */
  function refreshPending() {
    const sending = Boolean(room() && room().isReady());
    for (const item of list.querySelectorAll("li.pending:not(.failed)")) {
      view.setSendState(item, sending ? "Sending…" : "Not sent yet (waiting for connection)");
    }
  }

  function showEntry(entry) {
    const item = view.pendingNode(entry, ctx);
    list.append(item);
    if (entry.failed) view.setSendState(item, "Not sent: " + entry.failed, true);
  }

  function send(body, reply) {
    const entry = {
      clientId: newClientId(),
      body: body,
      replyTo: reply ? reply.id : null,
      reply: reply,
    };
    outbox.add(entry);
    showEntry(entry);
    refreshPending();
    scrollToEnd();
    pump();
  }

  function saveEdit(id, body) {
    const item = view.findById(list, id);
    if (!item) {
      cancel();
      showError("That message is no longer here.");
      return;
    }
    if (view.bodyOf(item) !== body && !(room() && room().edit(id, body))) {
      showError("Not connected: the edit is not saved. Try again once connected.");
      return;
    }
    cancel();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const body = input.value.trim();
    if (!body) return;
    if (body.length > maxLength) {
      showError("Messages are limited to " + maxLength + " characters.");
      return;
    }
    showError("");
    if (mode && mode.kind === "edit") {
      saveEdit(mode.id, body);
      return;
    }
    const reply = mode && mode.kind === "reply" ? mode.reply : null;
    input.value = "";
    setMode(null);
    send(body, reply);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      // Enter sends, as in a one-line box; Shift+Enter writes the new line Markdown needs.
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape" && mode) {
      event.preventDefault();
      cancel();
    } else if (event.key === "ArrowUp" && !input.value && (!mode || mode.kind !== "edit")) {
      const own = list.querySelectorAll("li.own[data-id]:not(.pending)");
      if (!own.length) return;
      event.preventDefault();
      startEdit(own[own.length - 1]);
    }
  });

  document.getElementById("composer-cancel").addEventListener("click", function () {
    cancel();
    input.focus();
  });

  /** The server refused a request of this page (``error.request`` says which, if any). */
  function refused(error) {
    const detail = error.detail || "The server refused this change.";
    showError(detail);
    const request = error.request;
    if (!request) return;
    if (request.kind === "message") {
      // Keep the text where it was, marked as refused, with Retry and Discard.
      outbox.fail(request.clientId, detail);
      const item = view.findByClientId(list, request.clientId, true);
      if (item) view.setSendState(item, "Not sent: " + detail, true);
      pump();
    } else if (request.kind === "edit" && !mode && !input.value.trim()) {
      const item = view.findById(list, request.id);
      if (item) {
        startEdit(item);
        input.value = request.body;
      }
    }
  }

  function retry(clientId) {
    const item = view.findByClientId(list, clientId, true);
    if (!item || !outbox.retry(clientId)) return;
    view.setSendState(item, "", false);
    refreshPending();
    showError("");
    pump();
  }

  function discard(clientId) {
    outbox.remove(clientId);
    const item = view.findByClientId(list, clientId, true);
    if (item) item.remove();
    input.focus();
  }

  return {
    startReply,
    startEdit,
    cancel,
    forget,
    refused,
    retry,
    discard,
    showError,
    showEntry,
    refreshPending,
    pump,
    focus: function () {
      input.focus();
    },
  };
}
