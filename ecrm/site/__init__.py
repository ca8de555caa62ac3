"""Stage 1, events in from the shop's pages: the `/t.js` script's page views, product views and
identify calls, an anonymous visitor merged into their profile once they are known."""
