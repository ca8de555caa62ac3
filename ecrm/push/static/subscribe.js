// ecrm web push subscribe script (served at /push/subscribe.js with this server's VAPID public key).
// On the shop's page, with a subscribe token the shop's backend minted for the logged-in customer
// (POST /v1/push/tokens, README "Web push"):
//   <script src="https://crm.shop.example/push/subscribe.js"></script>
//   button.onclick = () => ecrmPush.subscribe({token: "...", serviceWorker: "/sw.js"});
// It registers the service worker, asks for permission, subscribes with the VAPID key and posts
// the subscription with the token; no API key ever reaches the browser.
"use strict";
(function () {
  const API = "__ECRM_API__";
  const KEY = "__ECRM_VAPID_KEY__";

  function keyBytes(base64url) {
    const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  async function post(path, body) {
    const response = await fetch(API + path, {
      method: "POST", mode: "cors", credentials: "omit",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    if (!response.ok) {
      throw new Error("ecrm push: " + path + " answered " + response.status + " " + (await response.text()));
    }
    return response;
  }

  async function subscribe(options) {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      return null;
    }
    const registration = await navigator.serviceWorker.register(options.serviceWorker || "/sw.js");
    await navigator.serviceWorker.ready;
    if ((await Notification.requestPermission()) !== "granted") {
      return null;
    }
    const subscription = (await registration.pushManager.getSubscription())
      || (await registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: keyBytes(KEY)}));
    await post("/push/subscriptions", {
      token: options.token, subscription: subscription.toJSON(), user_agent: navigator.userAgent.slice(0, 500),
    });
    return subscription;
  }

  async function unsubscribe(options) {
    const registration = await navigator.serviceWorker.getRegistration((options || {}).serviceWorker || "/sw.js");
    const subscription = registration && (await registration.pushManager.getSubscription());
    if (!subscription) {
      return false;
    }
    await post("/push/unsubscribe", {endpoint: subscription.endpoint});
    return subscription.unsubscribe();
  }

  window.ecrmPush = {subscribe, unsubscribe};
})();
