async () => {
  // Run in the page by tests/e2e/test_dashboard.py: the page's live connection, on a
  // stand-in WebSocket, meets the notifier's subscribe rate limit (an error with
  // retry_after_s) and subscribes again when told; a plain error reaches the listener.
  const { Live } = await import('/static/js/live.js');
  const sockets = [];
  class StandIn extends EventTarget {
    static OPEN = 1;
    readyState = 0;
    sent = [];
    constructor(url) { super(); this.url = url; sockets.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() {}
    open() { this.readyState = 1; this.dispatchEvent(new Event('open')); }
    receive(message) {
      this.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(message) }));
    }
  }
  const real = window.WebSocket;
  window.WebSocket = StandIn;
  const heard = [];
  const live = new Live('ws://notifier.test', async () => 'ticket');
  try {
    live.watch('p1', (message) => heard.push(message.type));
    live.start();
    while (sockets.length === 0) await new Promise((r) => setTimeout(r, 5));
    const socket = sockets[0];
    socket.open();
    socket.receive({ type: 'snapshot', seq: 4, project: { project_id: 'p1' } });
    socket.receive({
      type: 'error', project_id: 'p1', message: 'too many subscribes', retry_after_s: 0.05,
    });
    const deadline = Date.now() + 5000;
    while (socket.sent.length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    socket.receive({ type: 'error', project_id: 'p1', message: 'not yours' });
    return { sent: socket.sent, heard };
  } finally {
    live.stop();
    window.WebSocket = real;
  }
}
