// "bob is typing…": tells the room (at most once every 3 s while the user types) and shows who
// else is typing, each for 6 s after their last typing frame or until their message arrives.

const SEND_EVERY = 3000;
const SHOW_FOR = 6000;

/** ``room()`` returns the socket's API (socket.js); ``maxOnline``: typing is off above it. */
export function createTyping({ room, maxOnline }) {
  const input = document.getElementById("message-input");
  const box = document.getElementById("typing");
  const typists = new Map(); // username → timer that forgets them
  let sentAt = -Infinity;
  let enabled = true;

  function render() {
    const names = [...typists.keys()];
    if (names.length === 0) box.textContent = "";
    else if (names.length === 1) box.textContent = names[0] + " is typing…";
    else if (names.length === 2) box.textContent = names[0] + " and " + names[1] + " are typing…";
    else box.textContent = "Several people are typing…";
  }

  function forget(user) {
    if (!typists.has(user)) return;
    clearTimeout(typists.get(user));
    typists.delete(user);
    render();
  }

  input.addEventListener("input", function () {
    if (!enabled || !input.value.trim() || Date.now() - sentAt < SEND_EVERY) return;
    if (room() && room().typing()) sentAt = Date.now();
  });
  // After a message is sent, the next keystroke tells the room again at once.
  document.getElementById("composer").addEventListener("submit", function () {
    sentAt = -Infinity;
  });

  return {
    /** Someone else is typing. */
    typing: function (user) {
      clearTimeout(typists.get(user));
      typists.set(
        user,
        setTimeout(function () {
          forget(user);
        }, SHOW_FOR),
      );
      render();
    },
    /** Their message arrived: they stopped typing it. */
    stopped: forget,
    /** The room's online count: above ``maxOnline`` the server relays no typing. */
    online: function (count) {
      enabled = count <= maxOnline;
    },
  };
}
