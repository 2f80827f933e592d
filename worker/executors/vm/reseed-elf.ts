/**
 * /bin/crowdbake-reseed in the guest: a 224-byte static x86-64 Linux program. Every build
 * restored from one VM snapshot would otherwise start with the same kernel RNG state (the
 * ChaCha key is in the saved RAM), so two builds would read the same /dev/urandom bytes.
 * After a restore the agent pipes 32 fresh host bytes into it (`setup`), and it:
 *   read(0, buf, 32)                         the seed (exactly 32 bytes, else exit 1)
 *   ioctl(1, RNDADDENTROPY, {256, 32, buf})  stdout is /dev/urandom: mix the seed in, credited
 *   ioctl(1, RNDRESEEDCRNG)                  rekey the CRNG from the pool now, not in a minute
 *   exit_group(0)                            (any failure: exit 1)
 * Busybox has no applet for these ioctls, the guest has no compiler, and the cloud kernel has
 * no vmgenid driver (which would reseed on its own). The code bytes are `as --64` output of
 * the listing below (kept here so the bytes can be checked); the ELF headers are written out
 * field by field. reseed-elf.test.ts runs it on the host to see it refuse a short seed and a
 * non-random stdout; vm.test.ts shows two restored guests reading different random bytes.
 *
 *   sub rsp,48; mov dword [rsp],256; mov dword [rsp+4],32
 *   xor eax,eax; xor edi,edi; lea rsi,[rsp+8]; mov edx,32; syscall; cmp rax,32; jne fail
 *   mov eax,16; mov edi,1; mov esi,0x40085203; mov rdx,rsp; syscall; test rax,rax; jnz fail
 *   mov eax,16; mov edi,1; mov esi,0x5207; syscall; test rax,rax; jnz fail
 *   xor edi,edi; jmp done
 *   fail: mov edi,1
 *   done: mov eax,231; syscall
 */
const CODE = Buffer.from(
  '4883ec30c7042400010000c74424042000000031c031ff488d742408ba200000000f054883f8207533'
  + 'b810000000bf01000000be035208404889e20f054885c0751ab810000000bf01000000be075200000f05'
  + '4885c0750431ffeb05bf01000000b8e70000000f05', 'hex');

const BASE = 0x400000n;
const EHDR = 64;
const PHDR = 56;

export function reseedElf(): Buffer {
  const size = EHDR + PHDR + CODE.length;
  const b = Buffer.alloc(size);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // 64-bit
  b[5] = 1; // little-endian
  b[6] = 1; // ELF version
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(0x3e, 18); // x86-64
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(BASE + BigInt(EHDR + PHDR), 24); // entry: the code, right after the headers
  b.writeBigUInt64LE(BigInt(EHDR), 32); // program headers at 64
  b.writeBigUInt64LE(0n, 40); // no section headers
  b.writeUInt32LE(0, 48);
  b.writeUInt16LE(EHDR, 52);
  b.writeUInt16LE(PHDR, 54);
  b.writeUInt16LE(1, 56); // one program header
  b.writeUInt16LE(64, 58);
  b.writeUInt16LE(0, 60);
  b.writeUInt16LE(0, 62);
  const p = EHDR;
  b.writeUInt32LE(1, p); // PT_LOAD
  b.writeUInt32LE(5, p + 4); // R + X
  b.writeBigUInt64LE(0n, p + 8); // the whole file
  b.writeBigUInt64LE(BASE, p + 16);
  b.writeBigUInt64LE(BASE, p + 24);
  b.writeBigUInt64LE(BigInt(size), p + 32);
  b.writeBigUInt64LE(BigInt(size), p + 40);
  b.writeBigUInt64LE(0x1000n, p + 48);
  CODE.copy(b, EHDR + PHDR);
  return b;
}
