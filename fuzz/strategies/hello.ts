/**
 * The hello exchange on both endpoints, type-confused: wrong types and ranges in every field,
 * strings longer than a close reason may be in the fields a host may echo into one (t, v,
 * client, role, id), hellos as non-maps, two hellos, a request instead of a hello.
 */
import { encode } from '../msgpack.ts';
import { hostileValue, longString } from '../values.ts';
import { macFor, nonce, req, versionFrom } from '../wire.ts';
import { mutate, probeControl } from './common.ts';
import type { Strategy } from './types.ts';

const ECHO_FIELDS = ['t', 'v', 'client', 'role', 'id', 'method'] as const;

export const helloConfused: Strategy = {
  name: 'hello-confused', surfaces: ['control', 'migrate'], weight: 9,
  async run(ctx) {
    const rng = ctx.rng;
    const path = ctx.path();
    const conn = await ctx.connect(path);
    const hello = await conn.nextMsg(2000, 'hello');
    const v = versionFrom(hello, path);
    const base: Record<string, unknown> = {
      t: 'hello', v, nonce: nonce(),
      ...(path === '/control' ? { client: 'ferry-fuzz' } : { role: rng.pick(['bulk', 'prio']), id: ctx.freshName('id') }),
      ...macFor(ctx.auth(), path, ctx.target.token, hello?.challenge, rng),
    };
    const variant = rng.weighted([
      ['fields', 5], ['echo-long', 4], ['two-hellos', 1], ['req-first', 1], ['not-a-map', 1], ['hello-then-junk', 1], ['recover', 1],
    ] as const);
    ctx.note(`${path}:${variant}`);
    switch (variant) {
      case 'fields':
        conn.send(encode(mutate(base, rng, rng.range(1, 3), ['t', 'v', 'client', 'nonce', 'mac', 'role', 'id', 'recover'])));
        break;
      case 'echo-long': {
        const field = rng.pick(ECHO_FIELDS);
        conn.send(encode({ ...base, [field]: rng.chance(0.8) ? longString(rng) : hostileValue(rng) }));
        break;
      }
      case 'two-hellos':
        conn.send(encode(base));
        conn.send(encode(rng.chance(0.5) ? base : mutate(base, rng, 1)));
        break;
      case 'req-first':
        conn.send(encode(req(rng.int(100), rng.pick(['host.info', 'vm.list', 'vm.destroy']), { name: ctx.freshName() })));
        break;
      case 'not-a-map':
        conn.send(encode(rng.pick<unknown>([[base.t, base.v], 'hello', 1, null, [base], true])));
        break;
      case 'hello-then-junk':
        conn.send(encode(base));
        conn.send(rng.bytes(rng.range(1, 64)));
        break;
      case 'recover':
        conn.send(encode({ ...base, role: 'bulk', recover: rng.pick<unknown>([true, 1, 'true', longString(rng)]), id: rng.chance(0.5) ? ctx.freshName('id') : longString(rng) }));
        if (rng.chance(0.5)) conn.send(encode({ t: 'recover' }));
        break;
    }
    const answer = await conn.nextMsg(2000, 'ready', 'failed');
    if (answer?.t === 'ready' && path === '/control') await probeControl(ctx, conn);
    else await conn.waitClosed(1000);
  },
};
