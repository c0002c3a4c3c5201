import fs from 'node:fs';
import fsp from 'node:fs/promises';
const dir = '/work/bench-work/vdi-10000/libvirt/domains';
const files = fs.readdirSync(dir).map((f) => `${dir}/${f}`);
async function asyncOne(f: string) { await fsp.lstat(f); const h = await fsp.open(f, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW); const st = await h.stat({ bigint: true }); const b = Buffer.alloc(Number(st.size) + 1); await h.read(b, 0, b.length, 0); await h.close(); }
function syncOne(f: string) { fs.lstatSync(f); const fd = fs.openSync(f, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW); const st = fs.fstatSync(fd, { bigint: true }); const b = Buffer.alloc(Number(st.size) + 1); fs.readSync(fd, b, 0, b.length, 0); fs.closeSync(fd); }
for (let round = 0; round < 2; round++) {
  let t = performance.now(); for (const f of files) await asyncOne(f); console.log('async sequential', Math.round(performance.now() - t));
  t = performance.now(); { let i = 0; await Promise.all(Array.from({ length: 32 }, async () => { while (i < files.length) await asyncOne(files[i++]); })); } console.log('async 32 wide', Math.round(performance.now() - t));
  t = performance.now(); for (const f of files) syncOne(f); console.log('sync', Math.round(performance.now() - t));
}
