// AdminService's calls on registration tokens: make, list, revoke.
import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { RegistrationTokenSchema, type AdminService, type RegistrationToken } from '../../gen/kiln/v1/admin_pb.js';
import type { Database } from '../db/connection.js';
import { createRegistrationToken, listRegistrationTokens, revokeRegistrationToken, type RegistrationTokenRecord } from './registration-tokens.js';

function tokenToProto(t: RegistrationTokenRecord): RegistrationToken {
  return create(RegistrationTokenSchema, {
    id: t.id,
    tags: t.tags,
    createdAt: timestampFromDate(t.createdAt),
    expiresAt: t.expiresAt ? timestampFromDate(t.expiresAt) : undefined,
    revokedAt: t.revokedAt ? timestampFromDate(t.revokedAt) : undefined,
    registrations: t.registrations,
  });
}

export function registrationTokensAdmin(db: Database): Pick<ServiceImpl<typeof AdminService>, 'createRegistrationToken' | 'listRegistrationTokens' | 'revokeRegistrationToken'> {
  return {
    async createRegistrationToken(req) {
      const tags = req.tags.map(({ key, value }) => ({ key, value }));
      const { token, secret } = await createRegistrationToken(db, { tags, ...(req.expiresAt ? { expiresAt: timestampDate(req.expiresAt) } : {}) });
      return { token: tokenToProto(token), secret };
    },
    async listRegistrationTokens() {
      return { tokens: (await listRegistrationTokens(db)).map(tokenToProto) };
    },
    async revokeRegistrationToken(req) {
      return { token: tokenToProto(await revokeRegistrationToken(db, req.id)) };
    },
  };
}
