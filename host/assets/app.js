// WakeDock UI: the little the server cannot do alone. Pages work without
// this script (forms post, links navigate); with it they update live over
// server-sent events, ask before destructive actions, keep the session
// alive while open and follow container logs.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const body = document.body;

  // --- Forms -------------------------------------------------------------
  // Destructive actions ask first; the server asks again without JS.
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    // A form with several actions carries the question on each button.
    const question = (ev.submitter && ev.submitter.dataset.confirm) || form.dataset.confirm;
    const field = form.querySelector('input[name="confirm"]');
    if (question && field && field.value !== "yes") {
      if (!window.confirm(question)) { ev.preventDefault(); return; }
      field.value = "yes";
    }
    if (form.hasAttribute("data-wake") && !(ev.submitter && ev.submitter.hasAttribute("formaction"))) {
      // A wake takes seconds: post in the background and show progress;
      // the live stream turns the badge from waking to awake.
      ev.preventDefault();
      const progress = $("[data-progress]", form);
      const buttons = $$("button", form);
      buttons.forEach((b) => { b.disabled = true; });
      const started = Date.now();
      const tick = window.setInterval(() => {
        progress.textContent = "Waking… " + ((Date.now() - started) / 1000).toFixed(1) + " s";
      }, 100);
      // Not following the redirect leaves the outcome message for the reload.
      fetch(form.action, { method: "POST", credentials: "same-origin", redirect: "manual",
        body: new URLSearchParams(new FormData(form)) })
        .finally(() => { window.clearInterval(tick); window.location.reload(); });
      return;
    }
    if (form.hasAttribute("data-logout")) {
      // Revoke the refresh token too: only the API path receives it.
      ev.preventDefault();
      fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin", headers: csrfHeader() })
        .finally(() => { window.location.href = "/login"; });
    }
  });
  $$("[data-back]").forEach((a) => a.addEventListener("click", (ev) => {
    if (window.history.length > 1) { ev.preventDefault(); window.history.back(); }
  }));

  // --- Session -----------------------------------------------------------
  // A fresh token pair every few minutes while a page is open; forms get
  // the new CSRF token.
  // The double-submit token: a refresh from the cookie must echo it.
  function csrfHeader() {
    const m = document.cookie.match(/(?:^|;\s*)wakedock_csrf=([^;]*)/);
    return { "X-CSRF-Token": m ? decodeURIComponent(m[1]) : "" };
  }
  function refresh() {
    return fetch("/api/v1/auth/refresh", { method: "POST", credentials: "same-origin", headers: csrfHeader() })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((s) => {
        // Plugin pages' forms carry a token of their own, never this one.
        $$('input[name="csrf"]').filter((i) => !i.closest("[data-plugin-page]"))
          .forEach((i) => { i.value = s.csrf_token; });
        return s;
      });
  }
  const live = $("#live");
  if (live) window.setInterval(() => refresh().catch(() => {}), 4 * 60 * 1000);
  // On the login page, a still valid refresh token (7 days) signs in again
  // without a password.
  const login = $("form[data-login]");
  if (login && !$(".flash")) {
    refresh().then(() => { window.location.replace(login.elements.next.value || "/"); }).catch(() => {});
  }

  // --- Compose output ----------------------------------------------------
  // A stack's actions, live (plugin pages name the stack; the host decides
  // who may read it). The element's text is the server-rendered output;
  // the stream replays the last action's lines, then follows.
  // Each element's stream, closed when a live page's swap removes it.
  const composeStreams = [];
  function followCompose(root) {
    $$("[data-compose-output]", root).forEach((el) => {
      composeStreams.push({ el, es: followComposeOutput(el) });
    });
  }
  function followComposeOutput(el) {
    const project = el.dataset.composeOutput;
    const status = el.parentElement ? $("[data-compose-status]", el.parentElement) : null;
    let current = null;
    const es = new EventSource("/api/v1/compose/" + encodeURIComponent(project) + "/output");
    es.addEventListener("action", (e) => {
      const a = JSON.parse(e.data);
      if (a.id !== current) { el.textContent = ""; current = a.id; }
      el.dataset.state = a.state;
      el.setAttribute("aria-busy", String(a.state === "running"));
      if (status) status.textContent = a.kind + ": " + a.state + (a.exit_code != null ? " (exit " + a.exit_code + ")" : "");
    });
    es.addEventListener("line", (e) => {
      const l = JSON.parse(e.data);
      el.append(l.line + "\n");
      el.scrollTop = el.scrollHeight;
    });
    return es;
  }
  followCompose(document);

  // --- Live plugin pages -------------------------------------------------
  // A plugin page whose manifest entry names topics (`live`) has the
  // address of its stream in `data-live`: when the plugin publishes one of
  // them, the page is fetched again (the same sanitised page a reload
  // gives) and its content swapped in place, scroll kept. A form is never
  // clobbered: while focus is in one, the swap waits (`data-live-state` is
  // `held`) until focus leaves it; what was typed into a field is carried
  // over to the same field of the new content. Without this script the
  // page is an ordinary one.
  const livePage = $("[data-plugin-page][data-live]");
  if (livePage) {
    const edited = new Map(); // field key -> the value the user gave it
    let fetching = false, again = false, held = false, swaps = 0;
    const setState = (s) => { livePage.dataset.liveState = s; };
    // A field is known by its form's action and rank among forms with that
    // action, its name and its rank among fields of that name.
    const fieldKey = (f) => {
      const form = f.form;
      if (!form || !f.name) return null;
      const action = form.getAttribute("action") || "";
      const forms = $$("form", livePage).filter((x) => (x.getAttribute("action") || "") === action);
      const same = Array.from(form.elements).filter((x) => x.name === f.name);
      return [action, forms.indexOf(form), f.name, same.indexOf(f)].join("\u0000");
    };
    const valueOf = (f) => (f.type === "checkbox" || f.type === "radio" ? f.checked : f.value);
    const onEdit = (ev) => {
      const k = fieldKey(ev.target);
      if (k !== null) edited.set(k, valueOf(ev.target));
    };
    livePage.addEventListener("input", onEdit);
    livePage.addEventListener("change", onEdit);
    const formFocused = () => {
      const a = document.activeElement;
      return !!(a && livePage.contains(a) && a.closest("form"));
    };
    function swap(html) {
      const doc = new DOMParser().parseFromString(html, "text/html");
      const fresh = doc.querySelector("[data-plugin-page]");
      // Another document (a sign-in page, an error): leave the page as is.
      if (!fresh || fresh.dataset.pluginPage !== livePage.dataset.pluginPage) return;
      if (formFocused()) { held = true; setState("held"); return; }
      const x = window.scrollX, y = window.scrollY;
      const open = $$("details", livePage).map((d) => d.open);
      livePage.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
      $$("details", livePage).forEach((d, i) => { if (i < open.length) d.open = open[i]; });
      $$("input, select, textarea", livePage).forEach((f) => {
        const k = fieldKey(f);
        if (k === null || !edited.has(k)) return;
        if (f.type === "checkbox" || f.type === "radio") f.checked = edited.get(k);
        else f.value = edited.get(k);
      });
      if (doc.title) document.title = doc.title;
      composeStreams.filter((c) => !c.el.isConnected).forEach((c) => c.es.close());
      composeStreams.splice(0, composeStreams.length, ...composeStreams.filter((c) => c.el.isConnected));
      followCompose(livePage);
      window.scrollTo(x, y);
      swaps += 1;
      livePage.dataset.liveSwaps = String(swaps);
      setState("on");
    }
    // One fetch at a time; events during it make one more afterwards. A
    // fetch the network dropped (not an answer) is tried again, slower.
    let lost = 0;
    function update() {
      if (formFocused()) { held = true; setState("held"); return; }
      if (fetching) { again = true; return; }
      fetching = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then((r) => {
          lost = 0;
          return r.ok ? r.text().then(swap) : null;
        }, () => {
          lost += 1;
          if (lost <= 5) window.setTimeout(update, 500 * 2 ** lost);
        })
        .finally(() => {
          fetching = false;
          if (again) { again = false; update(); }
        });
    }
    // Focus has moved on once `focusout` is done: look then.
    livePage.addEventListener("focusout", () => window.setTimeout(() => {
      if (held && !formFocused()) { held = false; update(); }
    }, 0));
    let up = false, retry = 1000;
    (function listen() {
      const es = new EventSource(livePage.dataset.live);
      es.addEventListener("hello", () => {
        retry = 1000;
        // Back after a lost connection: what was published meanwhile is
        // not known, so fetch the page once.
        if (up) update();
        up = true;
        if (!held) setState("on");
      });
      es.addEventListener("changed", update);
      es.onerror = () => {
        setState("off");
        if (es.readyState === EventSource.CLOSED) {
          // Refused (signed out, plugin disabled) or gone: again, slower.
          es.close();
          window.setTimeout(() => refresh().catch(() => {}).finally(listen), retry);
          retry = Math.min(retry * 2, 30000);
        }
      };
    })();
  }

  // --- Live updates ------------------------------------------------------
  if (!live) return;
  const follow = body.dataset.follow;
  const url = "/ui/events" + (follow ? "?container=" + encodeURIComponent(follow) : "");
  let source = null, wasUp = false, retry = 1000;

  function setLive(on, text) {
    live.textContent = text;
    live.className = "live " + (on ? "on" : "off");
  }

  function connect() {
    source = new EventSource(url);
    source.addEventListener("hello", () => {
      retry = 1000;
      // Back after a lost connection (the host restarted): what changed in
      // the meantime is not known, so show the page afresh.
      if (wasUp) { window.location.reload(); return; }
      wasUp = true;
      setLive(true, "live");
    });
    source.addEventListener("container", (e) => onContainer(JSON.parse(e.data)));
    source.addEventListener("service", (e) => onService(JSON.parse(e.data)));
    source.addEventListener("log", (e) => onLog(JSON.parse(e.data)));
    source.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
    source.onerror = () => {
      setLive(false, "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // Refused (signed out?) or the host is gone: try again, slower.
        source.close();
        window.setTimeout(() => refresh().catch(() => {}).finally(connect), retry);
        retry = Math.min(retry * 2, 10000);
      }
    };
  }

  function classOf(el, state, health) {
    if (health === "unhealthy") return "unhealthy";
    if (state === "running") return "running";
    return el.hasAttribute("data-managed") ? "sleeping" : "stopped";
  }

  function onContainer(c) {
    $$('[data-container="' + c.id + '"]').forEach((el) => {
      const stateEl = $('[data-field="state"]', el);
      const healthEl = $('[data-field="health"]', el) || $('[data-field="health"]');
      if (c.state) el.dataset.state = c.state;
      if (c.health && healthEl) healthEl.textContent = c.health;
      const cls = classOf(el, el.dataset.state, healthEl ? healthEl.textContent : "");
      el.dataset.class = cls;
      if (stateEl && c.state) {
        stateEl.textContent = cls === "sleeping" ? "sleeping" : c.state;
        stateEl.className = "badge " + cls;
      }
      const status = $('[data-field="status"]', el);
      if (status && c.state) status.textContent = c.action + " just now";
    });
    // Overview: recount, and list the event.
    const states = $("#states");
    if (states && c.state) {
      const map = JSON.parse(states.dataset.states || "{}");
      if (c.state === "removed") delete map[c.id];
      else map[c.id] = c.health === "unhealthy" ? "unhealthy" : c.state === "running" ? "running"
        : (map[c.id] === "sleeping" ? "sleeping" : "stopped");
      states.dataset.states = JSON.stringify(map);
      $$("[data-count]").forEach((n) => {
        n.textContent = Object.values(map).filter((v) => v === n.dataset.count).length;
      });
    }
    const events = $("#events");
    if (events && c.name) {
      const li = document.createElement("li");
      const t = document.createElement("time");
      t.textContent = new Date(c.at_ms).toISOString().replace("T", " ").slice(0, 19);
      const a = document.createElement("a");
      a.href = "/containers/" + encodeURIComponent(c.name);
      a.textContent = c.name;
      li.append(t, " ", a, " " + c.action);
      events.prepend(li);
      const none = $("#no-events");
      if (none) none.remove();
      while (events.children.length > 50) events.lastElementChild.remove();
    }
  }

  function onService(s) {
    $$('[data-service="' + s.service + '"]').forEach((el) => {
      el.dataset.state = s.state;
      $$('[data-field="svc-state"]', el).forEach((b) => {
        b.textContent = s.state;
        b.className = "badge svc-" + s.state;
      });
    });
    // Members the service's state lists: asleep (or being woken) ones
    // are sleeping when not running; stopped-outside ones are stopped.
    const states = $("#states");
    const map = states ? JSON.parse(states.dataset.states || "{}") : null;
    const names = states ? JSON.parse(states.dataset.names || "{}") : {};
    (s.members || []).forEach((m) => {
      const managed = m.status === "asleep" || m.status === "waiting" || m.status === "starting";
      $$('[data-name="' + m.name + '"]').forEach((el) => {
        el.toggleAttribute("data-managed", managed);
        const healthEl = $('[data-field="health"]', el);
        const cls = classOf(el, el.dataset.state, healthEl ? healthEl.textContent : "");
        el.dataset.class = cls;
        const stateEl = $('[data-field="state"]', el);
        if (stateEl) {
          stateEl.className = "badge " + cls;
          stateEl.textContent = cls === "sleeping" ? "sleeping" : el.dataset.state;
        }
      });
      const id = names[m.name];
      if (map && id && map[id] !== "running" && map[id] !== "unhealthy") {
        map[id] = managed ? "sleeping" : "stopped";
      }
    });
    if (map) {
      states.dataset.states = JSON.stringify(map);
      $$("[data-count]").forEach((n) => {
        n.textContent = Object.values(map).filter((v) => v === n.dataset.count).length;
      });
    }
  }

  // --- Logs --------------------------------------------------------------
  const log = $("#log");
  const bar = $("[data-logbar]");
  let paused = false, held = [], needle = "";
  if (log && bar) {
    bar.hidden = false;
    log.scrollTop = log.scrollHeight;
    const pause = $("[data-log-pause]", bar);
    const note = $("[data-log-note]", bar);
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
      if (!paused) { held.forEach(addLine); held = []; }
      note.textContent = paused ? "Paused: new lines are held." : "";
    });
    $("[data-log-search]", bar).addEventListener("input", (e) => {
      needle = e.target.value.toLowerCase();
      $$("li", log).forEach(filterLine);
    });
  }
  function filterLine(li) {
    li.classList.toggle("hidden", needle !== "" && !li.textContent.toLowerCase().includes(needle));
  }
  function addLine(l) {
    const li = document.createElement("li");
    li.className = l.stream;
    li.textContent = l.line;
    filterLine(li);
    log.append(li);
    while (log.children.length > 2000) log.firstElementChild.remove();
    const followBox = $("[data-log-follow]");
    if (!followBox || followBox.checked) log.scrollTop = log.scrollHeight;
  }
  function onLog(l) {
    if (!log) return;
    if (paused) { held.push(l); if (held.length > 5000) held.shift(); return; }
    addLine(l);
  }

  // --- Resource charts (drawn by the server) ------------------------------
  function onStats(s) {
    $$("[data-chart]").forEach((el) => { if (s[el.dataset.chart]) el.innerHTML = s[el.dataset.chart]; });
    $$("[data-stat]").forEach((el) => { if (s[el.dataset.stat]) el.textContent = s[el.dataset.stat]; });
  }

  // Time left before a service sleeps, counted down on the page.
  const loaded = Date.now();
  const countdowns = $$("[data-remaining-ms]");
  if (countdowns.length) {
    window.setInterval(() => {
      countdowns.forEach((el) => {
        const left = Math.max(0, Number(el.dataset.remainingMs) - (Date.now() - loaded));
        const s = Math.round(left / 1000);
        el.textContent = s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
      });
    }, 1000);
  }

  connect();
})();
