// ecrm web push service worker (served at /push/sw.js). A service worker must come from the
// shop's own origin: serve this file there, or put one line in the shop's /sw.js:
//   importScripts("https://crm.shop.example/push/sw.js");
// It shows each notification ecrm sends ({title, body, icon, url, lang, report}) and, on a
// click, opens `url` and posts to `report` (ecrm records a `clicked` response for the delivery).
"use strict";

self.addEventListener("push", (event) => {
  let data;
  try {
    data = event.data ? event.data.json() : null;
  } catch (error) {
    data = null;
  }
  if (!data || !data.title) {
    return;
  }
  const options = {body: data.body || "", lang: data.lang || "", data: {url: data.url || "", report: data.report || ""}};
  if (data.icon) {
    options.icon = data.icon;
  }
  event.waitUntil(self.registration.showNotification(data.title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const work = [];
  if (data.report) {
    work.push(fetch(data.report, {method: "POST", mode: "cors", credentials: "omit", keepalive: true})
      .catch(() => undefined));
  }
  if (data.url) {
    work.push(self.clients.openWindow(data.url));
  }
  event.waitUntil(Promise.all(work));
});
