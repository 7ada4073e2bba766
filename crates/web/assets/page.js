// datacap's one script (its SHA-256 is in the Content-Security-Policy, guard.rs): local
// times with a relative form, live updates that patch the page without a reload (focus,
// scroll and unsubmitted controls kept; a Pause button), and Esc closing an icon's tip.
(function () {
  "use strict";

  function relative(ms) {
    var s = Math.round(ms / 1000);
    var ago = s >= 0;
    s = Math.abs(s);
    var text;
    if (s < 45) {
      return "just now";
    } else if (s < 90 * 60) {
      text = Math.max(1, Math.round(s / 60)) + " min";
    } else if (s < 36 * 3600) {
      text = Math.round(s / 3600) + " h";
    } else {
      var days = Math.round(s / 86400);
      text = days + (days === 1 ? " day" : " days");
    }
    return ago ? text + " ago" : "in " + text;
  }

  function localize(scope) {
    var times = scope.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) {
        continue;
      }
      if (!el.hasAttribute("data-utc")) {
        el.setAttribute("data-utc", el.textContent);
      }
      el.title = el.getAttribute("data-utc");
      el.textContent = at.toLocaleString(undefined, {
        dateStyle: "medium",
        timeStyle: "short"
      }) + " (" + relative(Date.now() - at.getTime()) + ")";
    }
  }

  // Esc closes an open tip; it opens again on the next hover or focus.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    var icons = document.querySelectorAll(".icon");
    for (var i = 0; i < icons.length; i++) {
      icons[i].classList.add("tip-closed");
      icons[i].classList.remove("tip-open");
    }
  });
  function reopen(event) {
    var icon = event.target.closest && event.target.closest(".icon");
    if (icon && !icon.contains(event.relatedTarget)) {
      icon.classList.remove("tip-closed");
    }
  }
  document.addEventListener("focusin", reopen);
  document.addEventListener("mouseover", reopen);
  // A click on an icon (touch screens) toggles its tip.
  document.addEventListener("click", function (event) {
    var icon = event.target.closest && event.target.closest("button.icon");
    if (icon) {
      icon.classList.toggle("tip-open");
    }
  });

  // The server's HTML of each patched part, to compare with the next answer.
  var served = new WeakMap();
  function remember(scope) {
    var parts = scope.querySelectorAll("[data-patch]");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      served.set(part, part.innerHTML);
      if (part.getAttribute("data-patch") === "rows") {
        for (var j = 0; j < part.children.length; j++) {
          served.set(part.children[j], part.children[j].outerHTML);
        }
      }
    }
  }

  function patchRows(current, fresh) {
    var byKey = {};
    for (var i = 0; i < current.children.length; i++) {
      var row = current.children[i];
      byKey[row.getAttribute("data-key")] = row;
    }
    var wanted = [];
    for (var k = 0; k < fresh.children.length; k++) {
      var next = fresh.children[k];
      var old = byKey[next.getAttribute("data-key")];
      if (old && served.get(old) === next.outerHTML) {
        wanted.push(old);
      } else {
        var node = document.importNode(next, true);
        served.set(node, next.outerHTML);
        localize(node);
        wanted.push(node);
      }
    }
    for (var w = 0; w < wanted.length; w++) {
      if (current.children[w] !== wanted[w]) {
        current.insertBefore(wanted[w], current.children[w] || null);
      }
    }
    while (current.children.length > wanted.length) {
      current.removeChild(current.lastElementChild);
    }
  }

  function patch(doc) {
    var focused = document.activeElement;
    var focusId = focused && focused !== document.body ? focused.id : "";
    var x = window.scrollX;
    var y = window.scrollY;
    var parts = doc.querySelectorAll("[data-patch]");
    for (var i = 0; i < parts.length; i++) {
      var fresh = parts[i];
      var current = document.getElementById(fresh.id);
      if (!current) {
        continue;
      }
      if (fresh.getAttribute("data-patch") === "rows") {
        patchRows(current, fresh);
      } else if (served.get(current) !== fresh.innerHTML) {
        current.innerHTML = fresh.innerHTML;
        served.set(current, fresh.innerHTML);
        localize(current);
      }
    }
    if (focusId && document.activeElement !== focused) {
      var again = document.getElementById(focusId);
      if (again) {
        again.focus({ preventScroll: true });
      }
    }
    window.scrollTo(x, y);
  }

  var live = document.querySelector("[data-live]");
  if (live) {
    var seconds = Math.max(1, parseInt(live.getAttribute("data-live"), 10) || 30);
    var pause = document.getElementById("pause");
    var state = document.getElementById("live-state");
    var paused = false;
    var say = function (text) {
      if (state) {
        state.textContent = text;
      }
    };
    if (pause) {
      pause.hidden = false;
      pause.addEventListener("click", function () {
        paused = !paused;
        pause.setAttribute("aria-pressed", paused ? "true" : "false");
        pause.textContent = paused ? "Resume live updates" : "Pause live updates";
        say(paused ? "Live updates paused." : "Live updates every " + seconds + " s.");
      });
    }
    say("Live updates every " + seconds + " s.");
    var tick = function () {
      if (paused || document.hidden) {
        return;
      }
      fetch(window.location.href, {
        credentials: "same-origin",
        // A session that ended is sent to sign-in (a 303): not a page to patch in.
        redirect: "manual",
        headers: { "Accept": "text/html" }
      }).then(function (answer) {
        if (answer.type === "opaqueredirect" || answer.status === 401) {
          throw new Error("signed out");
        }
        if (!answer.ok) {
          throw new Error("status " + answer.status);
        }
        return answer.text();
      }).then(function (html) {
        patch(new DOMParser().parseFromString(html, "text/html"));
        document.documentElement.setAttribute("data-updated", String(Date.now()));
        say("Live updates every " + seconds + " s.");
      }).catch(function (problem) {
        say(problem && problem.message === "signed out"
          ? "Live updates stopped: your session ended; reload the page to sign in again."
          : "The last live update failed; the next one is in " + seconds + " s.");
      });
    };
    window.setInterval(tick, seconds * 1000);
  }

  remember(document);
  localize(document);
  window.setInterval(function () {
    // Relative times age even when nothing changes.
    var times = document.querySelectorAll("time[data-utc]");
    for (var i = 0; i < times.length; i++) {
      times[i].textContent = times[i].getAttribute("data-utc");
    }
    localize(document);
  }, 60000);
}());
