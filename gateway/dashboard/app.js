// The Macula node dashboard: one page, no dependencies. It reads
// /v1/dashboard/stream (server-sent events, read with fetch so that it can
// send an Authorization header in a secure realm) and draws each snapshot.
// Rates are differences between snapshots about WINDOW ms apart.
"use strict";
(function () {
  const WINDOW = 5000, KEEP = 20;
  const $ = (id) => document.getElementById(id);
  let history = []; // snapshots, oldest first
  let mesh = null;  // the last mesh (it comes in every third snapshot)
  let backoff = 500;

  // Authority: a value from #auth=..., or one typed in, kept in this tab.
  const m = location.hash.match(/auth=([^&]+)/);
  if (m) { sessionStorage.setItem("macula-auth", decodeURIComponent(m[1])); history_replace(); }
  function history_replace() { window.history.replaceState(null, "", location.pathname); }
  function headers() {
    const v = sessionStorage.getItem("macula-auth");
    return v ? { Authorization: v } : {};
  }
  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("macula-auth", $("auth-value").value.trim());
    $("auth").hidden = true;
    connect();
  });

  function el(tag, attrs, text) {
    const ns = ["svg", "line", "circle", "text", "g", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(id, t) { $(id).textContent = t == null || t === "" ? "–" : t; }
  function rate(x) { return x < 0.05 ? "0" : x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString(); }
  function ms(x) { return x == null ? "–" : x < 1 ? (x * 1000).toFixed(0) + " µs" : x < 1000 ? x.toFixed(x < 10 ? 1 : 0) + " ms" : (x / 1000).toFixed(1) + " s"; }
  function short(id) { return id && id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-6) : id; }
  function sum(o, keys) { let s = 0; for (const k in o || {}) if (!keys || keys.includes(k)) s += o[k]; return s; }
  function kv(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) { dl.append(el("dt", {}, k), el("dd", {}, v == null || v === "" ? "–" : String(v))); }
  }

  // quantile of the histogram difference cur-old (counts per bucket).
  function quantile(cur, old, bounds, q) {
    if (!cur || !cur.counts || !cur.counts.length) return null;
    const d = cur.counts.map((c, i) => c - ((old && old.counts && old.counts[i]) || 0));
    const n = d.reduce((a, b) => a + b, 0);
    if (n <= 0) return null;
    let acc = 0;
    for (let i = 0; i < d.length; i++) { acc += d[i]; if (acc >= q * n) return i < bounds.length ? bounds[i] : bounds[bounds.length - 1] * 2; }
    return null;
  }

  function render(s) {
    history.push(s);
    if (history.length > KEEP) history.shift();
    if (s.mesh) mesh = s.mesh;
    const now = Date.parse(s.time);
    let old = history[0];
    for (const h of history) { if (now - Date.parse(h.time) >= WINDOW) old = h; }
    const dt = (now - Date.parse(old.time)) / 1000;
    const per = (a, b) => (dt > 0 ? Math.max(0, a - b) / dt : 0);

    const n = s.node;
    setText("node-name", n.name); setText("realm", n.realm);
    const sec = $("security"); sec.textContent = n.security === "secure" ? "secure realm" : "OPEN realm"; sec.className = "badge " + n.security;
    setText("did", n.did); setText("alias", n.alias); setText("peer-id", n.peer_id);
    setText("addrs", (n.addrs || []).join("\n"));
    const nat = s.nat;
    setText("nat", nat.type + (nat.type !== "unknown" ? " (mapping " + nat.mapping + ", filtering " + nat.filtering + ")" : "") + (nat.error ? " — " + nat.error : ""));
    setText("public", nat.public_ip ? nat.public_ip + ":" + nat.public_port : "");
    setText("relays", s.relays.length ? s.relays.map(short).join(", ") : "none");
    setText("authority", n.authority || "none (open realm)");
    setText("updated", "updated " + new Date(s.time).toLocaleTimeString());

    drawMesh(s);
    drawPeers(s);

    // Procedures.
    const olds = {}; for (const p of old.procedures) olds[p.procedure] = p;
    const errs = ["not_found", "timeout", "disconnected", "remote_error", "unauthorized", "error"];
    const serr = ["remote_error", "timeout", "not_advertised", "unauthorized", "overloaded", "bad_request"];
    const tb = $("procs-table").tBodies[0]; tb.replaceChildren();
    for (const p of s.procedures) {
      const o = olds[p.procedure] || {};
      const tr = el("tr", { "data-procedure": p.procedure });
      const cr = per(sum(p.calls), sum(o.calls)), er = per(sum(p.calls, errs), sum(o.calls, errs));
      const sr = per(sum(p.served), sum(o.served)), ser = per(sum(p.served, serr), sum(o.served, serr));
      tr.append(el("td", { class: "mono" }, p.procedure), el("td", {}, p.advertised ? "advertised" : ""),
        el("td", { class: "num calls-rate" }, rate(cr)), el("td", { class: "num" + (er > 0 ? " bad" : "") }, rate(er)),
        el("td", { class: "num" }, ms(quantile(p.call_latency, o.call_latency, s.latency_bounds_ms, 0.5))),
        el("td", { class: "num" }, ms(quantile(p.call_latency, o.call_latency, s.latency_bounds_ms, 0.99))),
        el("td", { class: "num served-rate" }, rate(sr)), el("td", { class: "num" + (ser > 0 ? " bad" : "") }, rate(ser)),
        el("td", { class: "num" }, ms(quantile(p.served_latency, o.served_latency, s.latency_bounds_ms, 0.99))));
      tb.append(tr);
    }
    if (!s.procedures.length) tb.append(el("tr", {}, "")).lastChild.append(el("td", { colspan: 9, class: "muted" }, "no procedure advertised or called here yet"));

    // Topics and patterns.
    const ot = {}; for (const t of old.topics) ot[t.topic] = t;
    const op = {}; for (const p of old.patterns) op[p.pattern] = p;
    const tt = $("topics-table").tBodies[0]; tt.replaceChildren();
    for (const t of s.topics) {
      tt.append(row({ "data-topic": t.topic }, [t.topic, "mono"], [rate(per(t.published, (ot[t.topic] || {}).published || 0)), "num publish-rate"], ["", "num"], ["", "num"], [t.published.toLocaleString(), "num"]));
    }
    for (const p of s.patterns) {
      const o = op[p.pattern] || {};
      const dr = per(p.dropped, o.dropped || 0);
      tt.append(row({ "data-pattern": p.pattern }, [p.pattern + " (subscribed ×" + p.subscriptions + ")", "mono"], ["", "num"],
        [rate(per(p.delivered, o.delivered || 0)), "num deliver-rate"], [rate(dr), "num" + (dr > 0 ? " bad" : "")], [p.delivered.toLocaleString(), "num"]));
    }
    if (!s.topics.length && !s.patterns.length) tt.append(el("tr", {}, "")).lastChild.append(el("td", { colspan: 5, class: "muted" }, "nothing published or subscribed here yet"));
    const ps = s.pubsub, ops = old.pubsub;
    setText("pubsub-totals", "published " + rate(per(ps.published, ops.published)) + "/s · delivered " + rate(per(ps.delivered, ops.delivered)) +
      "/s · dropped " + rate(per(ps.dropped, ops.dropped)) + "/s (send " + ps.dropped_send + ", subscriber " + ps.dropped_local + " in all) · queued " + ps.queued);

    // DHT, membership, ring, actors, registry.
    const d = s.dht;
    kv($("dht"), d ? [["Mode", d.mode], ["Routing table", d.nodes + " peers, " + d.buckets + " buckets"], ["Provider keys", d.provider_keys], ["Value records", d.value_records], ["Providing", d.providing]] : [["", "not available"]]);
    const mem = s.members;
    kv($("members"), mem ? [["Members", mem.members], ["Suspect", mem.suspect], ["Links", mem.links], ["View version", mem.version], ["Suspicions", mem.suspicions]] : [["", "no membership"]]);
    const ring = $("ring"); ring.replaceChildren();
    if (s.ring && s.ring.capabilities && s.ring.capabilities.length) {
      for (const c of s.ring.capabilities) {
        const p = el("p", {}, ""); p.append(el("strong", {}, c.capability + ": "));
        const chips = el("span", { class: "chips" });
        for (const rn of c.nodes) chips.append(el("span", {}, nameOf(rn.id) + " " + rn.shards));
        p.append(chips); ring.append(p);
      }
    } else ring.append(el("p", { class: "muted" }, s.ring ? "no capability served" : "no actor system"));
    const a = s.actors;
    kv($("actors"), a ? [["Active actors", a.active], ["Queued messages", a.queued], ["Kinds", a.kinds], ["Moved in / out", a.moved_in + " / " + a.moved_out]] : []);
    const reg = $("registry"); reg.replaceChildren();
    if (s.registry) {
      const r = s.registry;
      reg.append(el("p", {}, r.names.length + " name(s), " + r.groups.length + " group(s)" + (r.truncated ? " (first ones)" : "")));
      const chips = el("div", { class: "chips" });
      for (const nm of r.names) chips.append(el("span", { title: nm.node }, nm.key + " → " + nameOf(nm.node)));
      for (const g of r.groups) chips.append(el("span", {}, g.key + " ×" + g.members));
      reg.append(chips);
    } else reg.append(el("p", { class: "muted" }, "no registry"));
  }

  function row(attrs, ...cells) {
    const tr = el("tr", attrs);
    for (const [t, cls] of cells) tr.append(el("td", { class: cls }, t));
    return tr;
  }

  function nameOf(id) {
    if (mesh) for (const n of mesh.nodes) if (n.peer_id === id && n.name) return n.name;
    const s = history[history.length - 1];
    if (s) { if (s.node.peer_id === id) return s.node.name; for (const p of s.peers) if (p.peer_id === id && p.name) return p.name; }
    return short(id);
  }

  function drawMesh(s) {
    const svg = $("mesh"); svg.replaceChildren();
    let nodes, links;
    if (mesh) { nodes = mesh.nodes; links = mesh.links; }
    else { // until the first mesh: this node and its peers
      nodes = [{ peer_id: s.node.peer_id, name: s.node.name, self: true, answered: true }].concat(s.peers.map((p) => ({ peer_id: p.peer_id, name: p.name, answered: true })));
      links = s.peers.map((p) => ({ a: s.node.peer_id, b: p.peer_id, path: p.path, rtt_ms: p.rtt_ms }));
    }
    const W = 600, H = 360, cx = W / 2, cy = H / 2, r = Math.min(W, H) / 2 - 45;
    const self = nodes.findIndex((n) => n.self);
    const order = nodes.slice(self).concat(nodes.slice(0, Math.max(self, 0)));
    const pos = {};
    order.forEach((n, i) => {
      const t = -Math.PI / 2 + (2 * Math.PI * i) / order.length;
      pos[n.peer_id] = order.length === 1 ? [cx, cy] : [cx + r * Math.cos(t), cy + r * Math.sin(t)];
    });
    for (const l of links) {
      const a = pos[l.a], b = pos[l.b];
      if (!a || !b) continue;
      const line = el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "link " + l.path, "data-path": l.path });
      line.append(el("title", {}, nameOf(l.a) + " – " + nameOf(l.b) + ": " + l.path + ", " + ms(l.rtt_ms)));
      svg.append(line);
      if (l.rtt_ms > 0 && nodes.length <= 12) svg.append(el("text", { x: (a[0] + b[0]) / 2 + 4, y: (a[1] + b[1]) / 2 - 4, class: "rtt" }, ms(l.rtt_ms)));
    }
    for (const n of order) {
      const [x, y] = pos[n.peer_id];
      const g = el("g", { class: "mesh-node", "data-peer": n.peer_id });
      const c = el("circle", { cx: x, cy: y, r: 16, class: "node" + (n.self ? " self" : "") + (n.answered ? "" : " silent") });
      c.append(el("title", {}, (n.name || "") + " " + n.peer_id + (n.error ? " — " + n.error : "")));
      g.append(c);
      if (nodes.length <= 24) g.append(el("text", { x: x, y: y + 32, "text-anchor": "middle" }, n.name || short(n.peer_id)));
      svg.append(g);
    }
    const direct = links.filter((l) => l.path === "direct").length;
    const mc = $("mesh-count");
    mc.dataset.nodes = nodes.length; mc.dataset.links = links.length;
    mc.textContent = nodes.length + " nodes · " + links.length + " links (" + direct + " direct, " + (links.length - direct) + " relayed)";
  }

  function drawPeers(s) {
    const tb = $("peers-table").tBodies[0]; tb.replaceChildren();
    const info = {}; if (mesh) for (const n of mesh.nodes) info[n.peer_id] = n;
    for (const p of s.peers) {
      const mi = info[p.peer_id] || {};
      tb.append(row({ "data-peer": p.peer_id }, [(p.name || "") + " " + short(p.peer_id), "mono"], [p.path, ""], [ms(p.rtt_ms), "num"],
        [(mi.capabilities || []).join(", "), ""], [mi.skew_ms != null ? ms(Math.abs(mi.skew_ms)) + (mi.skew_ms < 0 ? " behind" : " ahead") : "–", "num"]));
    }
    if (!s.peers.length) tb.append(el("tr", {}, "")).lastChild.append(el("td", { colspan: 5, class: "muted" }, "no peer connected"));
  }

  function live(on, text) { const l = $("live"); l.textContent = text; l.className = "badge " + (on ? "on" : "off"); }

  async function connect() {
    live(false, "connecting");
    try {
      const resp = await fetch("/v1/dashboard/stream?interval=1s", { headers: headers(), cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) {
        let why = "HTTP " + resp.status;
        try { why = (await resp.json()).error.message; } catch (e) { /* keep the status */ }
        $("auth-why").textContent = why; $("auth").hidden = false; live(false, "no authority");
        return;
      }
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      live(true, "live"); backoff = 500;
      const reader = resp.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) render(JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    live(false, "reconnecting");
    setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
  }
  connect();
})();
