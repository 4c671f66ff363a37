// What a message's buttons do: reply, react (picker and chips), edit, delete (after a
// confirmation dialog), jump to a quoted message, and retry or discard a refused send.

import * as view from "./render.js";

const HIGHLIGHT_MS = 2000;

export function bindActions({ ctx, list, composer, room }) {
  const dialog = document.getElementById("delete-dialog");
  let deleting = null; // {id, opener}: the message the dialog asks about

  function itemOf(node) {
    return node.closest("li.message");
  }

  function closePicker() {
    const picker = document.getElementById("emoji-picker");
    if (!picker || !picker.isConnected) return;
    const opener = picker.parentElement.querySelector(".react-button");
    if (opener) opener.setAttribute("aria-expanded", "false");
    picker.remove();
    return opener;
  }

  function togglePicker(opener) {
    const open = opener.getAttribute("aria-expanded") === "true";
    closePicker();
    if (open) return;
    const picker = view.pickerNode();
    const mine = view.readReactions(itemOf(opener));
    for (const choice of picker.querySelectorAll(".emoji-choice")) {
      const users = mine[choice.dataset.emoji] || [];
      choice.setAttribute("aria-pressed", String(users.includes(ctx.username)));
    }
    opener.after(picker);
    opener.setAttribute("aria-expanded", "true");
    picker.querySelector(".emoji-choice").focus();
  }

  /** Add this user's ``emoji`` to a message, or take it back if it is there. */
  function toggleReaction(item, emoji) {
    const users = view.readReactions(item)[emoji] || [];
    const active = !users.includes(ctx.username);
    if (!room() || !room().react(Number(item.dataset.id), emoji, active)) {
      composer.showError("Not connected: the reaction is not saved. Try again once connected.");
    }
  }

  function askDelete(item, opener) {
    const id = Number(item.dataset.id);
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm("Delete this message for everyone?")) remove(id);
      return;
    }
    deleting = { id: id, opener: opener };
    document.getElementById("delete-dialog-text").textContent = view.excerpt(view.bodyOf(item));
    dialog.returnValue = "";
    dialog.showModal();
  }

  function remove(id) {
    if (!room() || !room().remove(id)) {
      composer.showError("Not connected: the message is not deleted. Try again once connected.");
    }
  }

  if (dialog) {
    dialog.addEventListener("close", function () {
      // "close" is queued: a quick Escape then Enter on Delete can open the dialog again
      // before the first close arrives. That stale event must not consume the new question.
      if (dialog.open) return;
      const asked = deleting;
      deleting = null;
      if (!asked) return;
      if (dialog.returnValue === "confirm") {
        remove(asked.id);
        composer.focus();
      } else if (asked.opener.isConnected) {
        asked.opener.focus();
      }
    });
  }

  /** Scroll to a quoted message and highlight it; one this page does not show opens the
   * room around it (?around=<seq>). */
  function jumpTo(quote) {
    const target = view.findById(list, quote.dataset.parentId);
    if (!target) {
      const seq = Number(quote.dataset.parentSeq);
      if (Number.isInteger(seq) && seq > 0) location.search = "?around=" + seq;
      return;
    }
    target.scrollIntoView({ block: "center" });
    target.classList.remove("highlight");
    void target.offsetWidth; // restart the highlight animation
    target.classList.add("highlight");
    target.tabIndex = -1;
    target.focus({ preventScroll: true });
    setTimeout(function () {
      target.classList.remove("highlight");
    }, HIGHLIGHT_MS);
  }

  list.addEventListener("click", function (event) {
    const control = event.target.closest("button");
    if (!control || !list.contains(control)) return;
    const item = itemOf(control);
    if (!item) return;
    const kind = control.classList;
    if (kind.contains("emoji-choice")) {
      toggleReaction(item, control.dataset.emoji);
      const opener = closePicker();
      if (opener) opener.focus();
      return;
    }
    if (!kind.contains("react-button")) closePicker();
    if (kind.contains("reply-button")) composer.startReply(item);
    else if (kind.contains("react-button")) togglePicker(control);
    else if (kind.contains("reaction")) toggleReaction(item, control.dataset.emoji);
    else if (kind.contains("edit-button")) composer.startEdit(item);
    else if (kind.contains("delete-button")) askDelete(item, control);
    else if (kind.contains("quote")) jumpTo(control);
    else if (kind.contains("retry-button")) composer.retry(item.dataset.clientId);
    else if (kind.contains("discard-button")) composer.discard(item.dataset.clientId);
  });

  list.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target.closest("#emoji-picker")) {
      event.preventDefault();
      const opener = closePicker();
      if (opener) opener.focus();
    }
  });

  document.addEventListener("click", function (event) {
    if (!event.target.closest(".react-button, #emoji-picker")) closePicker();
  });

  return { closePicker };
}
