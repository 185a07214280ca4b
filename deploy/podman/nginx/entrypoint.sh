#!/bin/sh
# What the official nginx image's 20-envsubst-on-templates.sh does: each template becomes
# conf.d/<name>, with only the variables whose names match NGINX_ENVSUBST_FILTER substituted.
set -eu
filter="${NGINX_ENVSUBST_FILTER:-}"
names=$(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" </dev/null)
defined=$(printf '${%s} ' $names)
for template in /etc/nginx/templates/*.template; do
  [ -f "$template" ] || continue
  out="/etc/nginx/conf.d/$(basename "$template" .template)"
  envsubst "$defined" <"$template" >"$out"
done
exec "$@"
