// Who is online in this room (the presence frames of socket.js) and, in a direct conversation,
// whether the others are. Names are set with textContent only.

const WIDE = "(min-width: 700px)";

/** ``username``: this page's user; ``others``: the other members of a direct conversation. */
export function createPresence({ username, others }) {
  const box = document.getElementById("presence");
  const list = document.getElementById("presence-list");
  const count = document.getElementById("presence-count");
  const more = document.getElementById("presence-more");
  const direct = document.getElementById("direct-presence");
  // Open beside the messages on wide screens; folded on phones until the user opens it.
  if (window.matchMedia(WIDE).matches) box.open = true;

  function show(frame) {
    const names = Array.isArray(frame.online) ? frame.online : [];
    const total = Number.isInteger(frame.count) ? frame.count : names.length;
    list.replaceChildren(
      ...names.map(function (name) {
        const item = document.createElement("li");
        item.textContent = name === username ? name + " (you)" : name;
        if (name === username) item.className = "me";
        return item;
      }),
    );
    count.textContent = "(" + total + ")";
    more.hidden = total <= names.length;
    more.textContent = "and " + (total - names.length) + " more";
    if (direct && others.length) {
      const online = others.filter(function (name) {
        return names.includes(name);
      });
      direct.classList.toggle("is-online", online.length > 0);
      if (others.length === 1) {
        direct.textContent = others[0] + (online.length ? " is online" : " is offline");
      } else {
        direct.textContent = online.length ? "Online: " + online.join(", ") : "Nobody else online";
      }
    }
  }

  return { show };
}
