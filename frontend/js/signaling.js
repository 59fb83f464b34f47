// /ws/signal with reconnection: messages sent while offline wait; `onopen` runs on every
// (re)connection so the page can register again and resume its call.

export class SignalSocket {
  constructor(path, {onopen, onmessage, onstatus}) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onopen = onopen;
    this.onmessage = onmessage;
    this.onstatus = onstatus || (() => {});
    this.queue = [];
    this.retry = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = async () => {
      this.retry = 0;
      this.onstatus("online");
      try {
        await this.onopen();
      } catch (error) {
        console.error(error);
      }
      for (const message of this.queue.splice(0)) ws.send(JSON.stringify(message));
    };
    ws.onmessage = async (event) => {
      try {
        await this.onmessage(JSON.parse(event.data));
      } catch (error) {
        console.error(error);
      }
    };
    ws.onclose = (event) => {
      if (this.closed) return;
      // 4401: the token was revoked or expired (an UNAUTHORIZED error came first); a new
      // socket would be refused too. An ongoing call's media is not affected.
      if (event.code === 4401) {
        this.closed = true;
        this.onstatus("signed-out");
        return;
      }
      this.onstatus("reconnecting");
      const delay = Math.min(10000, 250 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (this.open) this.ws.send(JSON.stringify(message));
    else this.queue.push(message);
  }

  // Send now (used in onopen, before the queue is flushed).
  sendNow(message) {
    this.ws.send(JSON.stringify(message));
  }
}
