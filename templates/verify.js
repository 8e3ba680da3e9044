// Checks this copy of the site in the browser, as `mirrorkit verify` does on a computer.
//
// 1. manifest.json (the signed root) and its minisign signature: Ed25519 with WebCrypto,
//    over BLAKE2b-512 of the root (minisign's prehashed "ED" signatures; WebCrypto has no
//    BLAKE2b, so it is written out below), and the trusted comment's global signature, so
//    the version and expiry shown are the outlet's own.  The key comes from this page
//    (data-key), which the signed manifest names too.
// 2. The parts the root names by SHA-256, then files: a sample at first, every file on
//    request, each hashed with SHA-256 and compared with the signed size and hash.
//
// WebCrypto needs a secure context (https, or http on localhost); from file:// or plain
// http elsewhere the page says so and points to minisign and sha256sum.  The site's only
// script: no inline code, nothing loaded from elsewhere.  Its words are the page's
// (data-messages, in the interface's language), with {placeholders} filled in here.
"use strict";

(() => {
  const box = document.getElementById("check");
  if (!box) return;
  const $ = (id) => document.getElementById(id);
  const SAMPLE = 24;
  const PARALLEL = 6;
  const outlet = box.dataset.name;
  const messages = JSON.parse(box.dataset.messages || "{}");
  const lang = document.documentElement.lang || undefined;
  const t = (key, values = {}) => (messages[key] || key).replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
  const when = (iso) => {
    try {
      return `${new Date(iso).toLocaleString(lang, { dateStyle: "long", timeStyle: "short", timeZone: "UTC", hourCycle: "h23", calendar: "gregory", numberingSystem: "latn" })} UTC`;
    } catch (e) { return iso; }
  };

  function say(text, state) {
    const status = $("status");
    status.textContent = text;
    status.className = state === "done" ? "good" : state === "bad" ? "bad" : "";
    status.dataset.state = state;
  }

  // -- BLAKE2b-512 (RFC 7693), 64-bit words as BigInt in a BigUint64Array (wraps mod 2^64)

  const IV = [0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn,
    0xa54ff53a5f1d36f1n, 0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn,
    0x5be0cd19137e2179n];
  const SIGMA = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
  ];
  const MASK = 0xffffffffffffffffn;

  function blake2b512(bytes) {
    const h = new BigUint64Array(IV);
    h[0] ^= 0x01010040n; // no key, 64-byte digest
    const v = new BigUint64Array(16);
    const m = new BigUint64Array(16);
    const rotr = (x, n) => (x >> n) | (x << (64n - n));
    const g = (a, b, c, d, x, y) => {
      v[a] = v[a] + v[b] + x; v[d] = rotr(v[d] ^ v[a], 32n);
      v[c] = v[c] + v[d]; v[b] = rotr(v[b] ^ v[c], 24n);
      v[a] = v[a] + v[b] + y; v[d] = rotr(v[d] ^ v[a], 16n);
      v[c] = v[c] + v[d]; v[b] = rotr(v[b] ^ v[c], 63n);
    };
    const blocks = Math.max(1, Math.ceil(bytes.length / 128));
    const block = new Uint8Array(128);
    const view = new DataView(block.buffer);
    for (let i = 0; i < blocks; i++) {
      const chunk = bytes.subarray(i * 128, i * 128 + 128);
      block.fill(0);
      block.set(chunk);
      for (let w = 0; w < 16; w++) m[w] = view.getBigUint64(w * 8, true);
      v.set(h);
      v.set(IV, 8);
      v[12] ^= BigInt(i * 128 + chunk.length);
      if (i === blocks - 1) v[14] ^= MASK;
      for (let r = 0; r < 12; r++) {
        const s = SIGMA[r % 10];
        g(0, 4, 8, 12, m[s[0]], m[s[1]]); g(1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(2, 6, 10, 14, m[s[4]], m[s[5]]); g(3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(0, 5, 10, 15, m[s[8]], m[s[9]]); g(1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(2, 7, 8, 13, m[s[12]], m[s[13]]); g(3, 4, 9, 14, m[s[14]], m[s[15]]);
      }
      for (let w = 0; w < 8; w++) h[w] ^= v[w] ^ v[w + 8];
    }
    const out = new Uint8Array(64);
    const outView = new DataView(out.buffer);
    for (let w = 0; w < 8; w++) outView.setBigUint64(w * 8, h[w], true);
    return out;
  }
  window.mirrorkitBlake2b = blake2b512; // for the project's tests

  // -- helpers ---------------------------------------------------------------------------

  const utf8 = new TextEncoder();
  const fromBase64 = (text) => Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (bytes) => hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  const url = (path) => path.split("/").map(encodeURIComponent).join("/");

  async function get(path) {
    const response = await fetch(url(path), { cache: "no-store" });
    if (!response.ok) return null;
    return new Uint8Array(await response.arrayBuffer());
  }

  // -- the signed root -------------------------------------------------------------------

  function parseSignature(bytes) {
    const lines = new TextDecoder().decode(bytes).split("\n");
    const prefix = "trusted comment: ";
    if (lines.length < 4 || !lines[2].startsWith(prefix)) throw new Error(t("not_signature"));
    const blob = fromBase64(lines[1]);
    const global = fromBase64(lines[3]);
    if (blob.length !== 74 || blob[0] !== 0x45 || blob[1] !== 0x44 || global.length !== 64) {
      throw new Error(t("not_prehashed"));
    }
    return { keyId: blob.subarray(2, 10), signature: blob.subarray(10), comment: lines[2].slice(prefix.length), global };
  }

  async function checkRoot(root, signatureBytes, keyBlob) {
    const sig = parseSignature(signatureBytes);
    if (!equal(sig.keyId, keyBlob.subarray(2, 10))) throw new Error(t("other_key"));
    const key = await crypto.subtle.importKey("raw", keyBlob.subarray(10), { name: "Ed25519" }, false, ["verify"]);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, sig.signature, blake2b512(root));
    if (!ok) throw new Error(t("forged"));
    const commented = new Uint8Array([...sig.signature, ...utf8.encode(sig.comment)]);
    if (!await crypto.subtle.verify({ name: "Ed25519" }, key, sig.global, commented)) {
      throw new Error(t("comment_changed"));
    }
    const fields = Object.fromEntries(sig.comment.split(" ").map((f) => f.split(/:(.*)/s).slice(0, 2)));
    const doc = JSON.parse(new TextDecoder().decode(root));
    if (fields.outlet !== doc.outlet || fields.version !== String(doc.version)) {
      throw new Error(t("comment_mismatch"));
    }
    return doc;
  }

  async function readParts(doc) {
    const files = [];
    const also = new Map((doc.transition || []).map((t) => [t.path, t.from]));
    for (const part of doc.parts) {
      const path = `parts/${part.sha256}.json`;
      const bytes = await get(path);
      if (!bytes || bytes.length !== part.size || await sha256(bytes) !== part.sha256) {
        throw new Error(t("part_bad", { path }));
      }
      for (const f of JSON.parse(new TextDecoder().decode(bytes)).files) {
        if (f.retired == null) files.push({ ...f, also: also.get(f.path) || [] });
      }
    }
    return files;
  }

  // -- files -----------------------------------------------------------------------------

  const checked = new Map(); // path -> null (genuine) or what differs

  async function checkFile(f) {
    const bytes = await get(f.path);
    if (!bytes) return t("missing");
    const digest = await sha256(bytes);
    const allowed = [{ sha256: f.sha256, size: f.size }, ...f.also];
    if (allowed.some((a) => a.sha256 === digest && a.size === bytes.length)) return null;
    return t("differs");
  }

  async function checkFiles(files) {
    const queue = files.filter((f) => !checked.has(f.path));
    const worker = async () => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        let problem;
        try { problem = await checkFile(f); } catch (e) { problem = t("unreadable", { error: e.message }); }
        checked.set(f.path, problem);
        $("files").textContent = t("progress", { count: checked.size });
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  }

  function report(all, doc, expired, newer) {
    const bad = [...checked].filter(([, problem]) => problem !== null).sort();
    const list = $("changed");
    list.replaceChildren(...bad.map(([path, problem]) => {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = path;
      item.append(code, `: ${problem}`);
      return item;
    }));
    const counts = { count: checked.size, total: all.length, good: checked.size - bad.length, bad: bad.length };
    $("files").textContent = t(checked.size === all.length ? "checked_all" : "checked_sample", counts);
    const version = t("version", { version: doc.version, created: when(doc.created) });
    const expires = when(doc.expires);
    if (bad.length) {
      say(t(bad.length === 1 ? "bad_one" : "bad_many", { count: bad.length, outlet, version }), "bad");
    } else if (newer) {
      say(t("old", { seen: newer.version, seen_created: when(newer.created), outlet, version }), "bad");
    } else if (expired) {
      say(t("stale", { version, expires }), "bad");
    } else {
      say(t("genuine", { outlet, version, expires }), "done");
    }
  }

  // The key is shown and remembered whole: a minisign key ID is 8 bytes its maker picks,
  // so a forger gives his key the outlet's ID.
  function showKey(line, keyId, id) {
    $("key").textContent = t("key", { key: line, key_id: keyId, outlet });
    const name = `mirrorkit-public-key:${id}`;
    let first = null;
    try {
      first = localStorage.getItem(name);
      if (!first) localStorage.setItem(name, line);
    } catch (e) { /* storage off: nothing to remember */ }
    if (first && first !== line) {
      const warning = $("key-warning");
      warning.textContent = t("key_changed", { outlet, first, key: line });
      warning.hidden = false;
    }
  }

  // The newest version seen here (this origin's storage), so that an old root served
  // again (a rollback) is told, as `mirrorkit verify` does; a newer genuine one replaces it.
  function newestSeen(doc, id) {
    const name = `mirrorkit-version:${id}`;
    let seen = null;
    try {
      seen = JSON.parse(localStorage.getItem(name) || "null");
      if (!seen || !(seen.version >= doc.version)) {
        localStorage.setItem(name, JSON.stringify({ version: doc.version, created: doc.created }));
      }
    } catch (e) { /* storage off or unreadable: nothing to compare with */ }
    return seen && seen.version > doc.version ? seen : null;
  }

  async function run() {
    box.hidden = false;
    if (location.protocol === "file:") {
      say(t("from_file"), "unavailable");
      $("check-all").parentElement.hidden = true; // nothing to press: it could not work here
      return;
    }
    if (!window.isSecureContext || !crypto.subtle) {
      say(t("insecure"), "unavailable");
      $("check-all").parentElement.hidden = true;
      return;
    }
    const keyLine = box.dataset.key.trim();
    const keyBlob = fromBase64(keyLine);
    // The ID as minisign prints it, from the key itself (not from a separate attribute).
    const keyId = hex(Array.from(keyBlob.subarray(2, 10)).reverse()).toUpperCase();
    showKey(keyLine, keyId, box.dataset.outlet);
    let doc;
    let files;
    try {
      const root = await get("manifest.json");
      if (!root) throw new Error(t("not_found", { path: "manifest.json" }));
      // The signature kept by the root's hash is always the root's own; the standard
      // name follows the root a moment later during a publish.
      const signature = await get(`signatures/${await sha256(root)}.minisig`) || await get("manifest.json.minisig");
      if (!signature) throw new Error(t("not_found", { path: "manifest.json.minisig" }));
      try {
        doc = await checkRoot(root, signature, keyBlob);
      } catch (e) {
        if (e.name === "NotSupportedError") throw new Error(t("no_ed25519"));
        throw e;
      }
      files = await readParts(doc);
    } catch (e) {
      say(t("not_genuine", { reason: e.message }), "bad");
      return;
    }
    if (doc.key_id !== keyId) {
      say(t("wrong_key", { key: doc.key_id }), "bad");
      return;
    }
    const expired = Date.now() >= Date.parse(doc.expires);
    const newer = newestSeen(doc, box.dataset.outlet);
    say(t("signature_valid", { outlet, version: doc.version }), "checking");
    const always = ["index.html", "verify.html", "mirrors.html"];
    const pool = files.filter((f) => !always.includes(f.path) && f.path !== "offline.zip");
    const sample = files.filter((f) => always.includes(f.path));
    while (sample.length < SAMPLE && pool.length) {
      sample.push(...pool.splice(Math.floor(Math.random() * pool.length), 1));
    }
    await checkFiles(sample);
    report(files, doc, expired, newer);
    const button = $("check-all");
    const bytes = files.reduce((n, f) => n + f.size, 0);
    button.textContent = t("check_every", { count: files.length, size: (bytes / 1e6).toLocaleString(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1, numberingSystem: "latn" }) });
    button.disabled = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      say(t("checking_every"), "checking");
      await checkFiles(files);
      report(files, doc, expired, newer);
    });
  }

  run();
})();
