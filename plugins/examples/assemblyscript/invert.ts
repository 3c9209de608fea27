// invert: a filter that inverts R, G and B (alpha kept), written in AssemblyScript.
// Params: amount (default 1, 0..1): how far towards the negative, 1 = the full negative.
//
// Build: npx asc invert.ts --outFile invert.wasm --runtime stub --optimize --use abort=
// (`--use abort=` drops AssemblyScript's `env.abort` import, which the sandbox refuses.)

@external("unmark", "output")
declare function output(data: usize, len: u32): void;

@external("unmark", "param")
declare function param(name: usize, nameLen: u32, fallback: f64): f64;

@external("unmark", "log")
declare function log(text: usize, len: u32): void;

function numberParam(name: string, fallback: f64): f64 {
  const utf8 = String.UTF8.encode(name);
  return param(changetype<usize>(utf8), <u32>utf8.byteLength, fallback);
}

function logLine(text: string): void {
  const utf8 = String.UTF8.encode(text);
  log(changetype<usize>(utf8), <u32>utf8.byteLength);
}

export function unmark_abi_version(): i32 {
  return 1;
}

export function unmark_alloc(len: u32): usize {
  const size: usize = len > 0 ? <usize>len : 1;
  return heap.alloc(size);
}

export function unmark_filter(
  rgba: usize,
  width: u32,
  height: u32,
  mask: usize,
  params: usize,
  paramsLen: u32,
): i32 {
  const amount = numberParam("amount", 1.0);
  if (!(amount >= 0.0 && amount <= 1.0)) {
    logLine("amount must be from 0 to 1");
    return 1;
  }
  // Fixed point: 256 = the full negative.
  const k = <i32>Math.round(amount * 256.0);
  const n = <usize>width * <usize>height;
  for (let i: usize = 0; i < n; i++) {
    const p = rgba + i * 4;
    for (let c: usize = 0; c < 3; c++) {
      const v = <i32>load<u8>(p + c);
      store<u8>(p + c, <u8>(v + (((255 - 2 * v) * k + 128) >> 8)));
    }
  }
  output(rgba, <u32>(n * 4));
  return 0;
}
