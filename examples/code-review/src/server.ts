import { createServer } from "http";
import { exec } from "child_process";

const PORT = 8080;

// Echoes a file listing for the given directory.
createServer((req, res) => {
  const url = new URL(req.url ?? "/", `http://localhost:${PORT}`);
  const dir = url.searchParams.get("dir") ?? ".";
  exec("ls -la " + dir, (err, stdout) => {
    if (err) { res.writeHead(500); res.end(String(err)); return; }
    res.end(stdout);
  });
}).listen(PORT);
