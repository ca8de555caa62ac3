/* ecrm site script: page views, product views and identify calls, sent only with consent.
 *
 *   <script>window.ecrm=window.ecrm||function(){(ecrm.q=ecrm.q||[]).push(arguments)};
 *     ecrm('init','SITE_KEY'); ecrm('page');</script>
 *   <script async src="https://crm.example/t.js"></script>
 *   ... once the visitor agreed: ecrm('consent', true)
 *
 * Until ecrm('consent', true), nothing leaves the page and no cookie is written: calls wait in
 * memory (at most 50), and ecrm('consent', false) drops them and deletes the cookie. The
 * visitor id is a random first-party cookie (ecrm_vid, one year). A tracked email link's
 * ecrm_c parameter identifies the visitor and is taken out of the address bar; a form with
 * the data-ecrm-identify attribute identifies them by its email field when submitted.
 */
(function () {
  "use strict";
  var current = document.currentScript;
  var endpoint = new URL("/t/collect", current ? current.src : location.href).href;
  var COOKIE = "ecrm_vid";
  var MAX_WAITING = 50;
  var BATCH = 20;
  var key = null;
  var consent = false;
  var waiting = [];
  var timer = null;

  function readCookie() {
    var found = document.cookie.match(/(?:^|;\s*)ecrm_vid=([A-Za-z0-9_-]{16,64})/);
    return found ? found[1] : null;
  }

  function visitorId() {
    var id = readCookie();
    if (!id) {
      var bytes = new Uint8Array(16);
      crypto.getRandomValues(bytes);
      id = Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
    }
    document.cookie = COOKIE + "=" + id + "; Max-Age=31536000; Path=/; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    return id;
  }

  function send(events) {
    var body = JSON.stringify({ k: key, v: visitorId(), events: events });
    fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "omit",
                      headers: { "Content-Type": "text/plain" } }).catch(function () {});
  }

  function flush() {
    timer = null;
    while (consent && key && waiting.length) {
      send(waiting.splice(0, BATCH));
    }
  }

  function track(event) {
    waiting.push(event);
    if (waiting.length > MAX_WAITING) waiting.shift();
    if (consent && !timer) timer = setTimeout(flush, 0);
  }

  function text(value, max) {
    return value == null ? null : String(value).slice(0, max);
  }

  var commands = {
    init: function (siteKey) { key = text(siteKey, 64); },
    consent: function (given) {
      consent = given === true;
      if (consent) { flush(); return; }
      waiting = [];
      document.cookie = COOKIE + "=; Max-Age=0; Path=/";
    },
    page: function () {
      track({ type: "page", url: text(location.href, 2000), title: text(document.title, 300) || null,
              referrer: text(document.referrer, 2000) || null });
    },
    product: function (product) {
      track({ type: "product", url: text(location.href, 2000), product: product || {} });
    },
    identify: function (who) {
      who = who || {};
      var event = { type: "identify" };
      ["external_id", "signature", "email", "click"].forEach(function (name) {
        if (who[name] != null && who[name] !== "") event[name] = text(who[name], 320);
      });
      track(event);
    }
  };

  function call(args) {
    var command = commands[args[0]];
    if (command) command.apply(null, Array.prototype.slice.call(args, 1));
  }

  function clickToken() {
    var url = new URL(location.href);
    var token = url.searchParams.get("ecrm_c");
    if (!token) return;
    url.searchParams.delete("ecrm_c");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    commands.identify({ click: token });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-ecrm-identify")) return;
    var field = form.querySelector("input[type=email], input[name=email]");
    if (field && field.value) { commands.identify({ email: field.value }); flush(); }
  }, true);

  var queued = (window.ecrm && window.ecrm.q) || [];
  window.ecrm = function () { call(arguments); };
  clickToken();
  queued.forEach(call);
})();
