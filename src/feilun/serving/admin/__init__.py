"""HTTP management: `/admin/...` for admin keys, `/v1/feilun/...` for a tenant's own records."""
