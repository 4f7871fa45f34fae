// Adds `Authorization: Bearer $CERBERUS_KEY` to every request and relays it to $TARGET, streaming both
// ways. The conformance runner cannot send headers; the gateway requires its key in one.
// Usage: TARGET=http://127.0.0.1:8080 CERBERUS_KEY=cbk_... PORT=0 node auth-relay.mjs
import http from "node:http";

const target = new URL(process.env.TARGET);
const key = process.env.CERBERUS_KEY;
if (!key) {
  console.error("auth-relay: CERBERUS_KEY is not set");
  process.exit(2);
}

const server = http.createServer((request, response) => {
  const headers = { ...request.headers, authorization: `Bearer ${key}` };
  const upstream = http.request(
    { host: target.hostname, port: target.port, path: request.url, method: request.method, headers },
    (answer) => {
      response.writeHead(answer.statusCode, answer.headers);
      answer.pipe(response);
    },
  );
  upstream.on("error", (error) => {
    response.writeHead(502, { "content-type": "text/plain" });
    response.end(`auth-relay: ${error.message}`);
  });
  response.on("close", () => upstream.destroy());
  request.pipe(upstream);
});

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`auth-relay: http://127.0.0.1:${server.address().port}`);
});
