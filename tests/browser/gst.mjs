// gst-launch-1.0 pipelines for the browser scenarios: started with -m -v so
// that bus messages and buffers show in their output, stopped with SIGINT
// (gst-launch sends EOS and goes to NULL: a clean leave).
import { spawn } from 'node:child_process';
import { note, waitFor, within, WAIT_MS } from './lib.mjs';

export class Pipeline {
  static running = new Set();

  constructor (name, proc) {
    this.name = name;
    this.proc = proc;
    this.output = '';
    this.exited = false;
    this.exit = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.exited = true;
      note(`[${name}] gst-launch exited (${signal || code})`, true);
      Pipeline.running.delete(this);
      resolve(code);
    }));
  }

  // eos: Ctrl-C sends EOS first (-e), as a recording would.
  static launch (name, args, { eos = true } = {}) {
    const flags = eos ? ['-e', '-m', '-v'] : ['-m', '-v'];
    note(`[${name}] gst-launch-1.0 ${flags.join(' ')} ${args.join(' ')}`, true);
    const proc = spawn('gst-launch-1.0', [...flags, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new Pipeline(name, proc);
    Pipeline.running.add(p);
    for (const stream of [proc.stdout, proc.stderr]) {
      stream.on('data', (chunk) => {
        const text = chunk.toString();
        p.output += text;
        for (const l of text.split('\n'))
          if (/peerjs-|ERROR|WARN|CRITICAL/.test(l))
            note(`[${name}] ${l.slice(0, 300)}`);
      });
    }
    return p;
  }

  // The member id, from the peerjs-socket-connect message.
  async sessionId () {
    const m = await this.waitMessage('peerjs-socket-connect');
    const id = m.match(/id=\(string\)([0-9a-z]+)/)[1];
    note(`[${this.name}] session id ${id}`, true);
    return id;
  }

  // Waits for a line of output containing `text`; returns the line.
  async waitMessage (text, timeout = WAIT_MS) {
    return waitFor(`"${text}" from ${this.name}`, () => {
      if (this.exited)
        throw new Error(`${this.name} exited; its output:\n${this.output.slice(-4000)}`);
      const line = this.output.split('\n').find((l) => l.includes(text));
      return line || false;
    }, timeout);
  }

  count (text) {
    return this.output.split(text).length - 1;
  }

  async interrupt () {
    if (!this.exited) {
      this.proc.kill('SIGINT');
      await within(`${this.name} to exit after SIGINT`, this.exit, 10000);
    }
  }

  static killAll () {
    for (const p of Pipeline.running)
      p.proc.kill('SIGKILL');
  }
}

process.on('exit', () => Pipeline.killAll());
