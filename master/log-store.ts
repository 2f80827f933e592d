import { closeSync, createReadStream, existsSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import type { ReadStream } from 'node:fs';
import { join } from 'node:path';

/**
 * Build logs as plain files, `DATA/logs/<id>.log`, appended as chunks arrive. Writes are
 * small synchronous appends to an open descriptor, so memory stays flat however much a
 * build prints, and the log on disk is complete up to the last chunk received.
 */
export class LogStore {
  private readonly dir: string;
  private readonly open = new Map<number, number>();

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'logs');
    mkdirSync(this.dir, { recursive: true });
  }

  path(buildId: number): string {
    return join(this.dir, `${buildId}.log`);
  }

  append(buildId: number, data: string | Buffer): void {
    let fd = this.open.get(buildId);
    if (fd === undefined) {
      fd = openSync(this.path(buildId), 'a');
      this.open.set(buildId, fd);
    }
    if (typeof data === 'string') writeSync(fd, data);
    else writeSync(fd, data);
  }

  /** Closes the file of a build that is no longer running. More appends reopen it. */
  finish(buildId: number): void {
    const fd = this.open.get(buildId);
    if (fd !== undefined) {
      closeSync(fd);
      this.open.delete(buildId);
    }
  }

  size(buildId: number): number {
    const p = this.path(buildId);
    return existsSync(p) ? statSync(p).size : 0;
  }

  read(buildId: number): ReadStream | null {
    const p = this.path(buildId);
    return existsSync(p) ? createReadStream(p) : null;
  }

  close(): void {
    for (const id of [...this.open.keys()]) this.finish(id);
  }
}
