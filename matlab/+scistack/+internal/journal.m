function S = journal(root, chunk_bytes)
%JOURNAL The folded ref journal <ROOT>/.scistack/refs.log (docs/format.md section 2).
%   S = journal(ROOT) returns the state of every `put` line:
%     S.P.var, S.P.addr, S.P.vkeys (canonical JSON text of the two objects), S.P.version,
%     S.P.oid, S.P.kind, S.P.t, S.P.line   (one element per put, in journal order)
%     S.deleted   a `del` line after the put removed (var, addr, version)
%     S.current   the put is the highest surviving version of its (var, addr, vkeys)
%     S.meta      a scistack.internal.Store (a handle): decoded addr/vkeys by JSON text
%   Only complete lines count: a last line without "\n" is an interrupted write. Lines of
%   other ops (call, run, ...) are skipped; an unreadable complete line (e.g. the fragment
%   of an interrupted write that a later append terminated) is skipped with a
%   scistack:corruptJournal warning that names its line number. The state is cached per project and keyed on
%   the file size: an unchanged journal costs one dir() call, a grown one is read from
%   where the cached state stopped (the journal is append-only), a shrunk one is re-read.
%   CHUNK_BYTES (tests) bounds how much text is parsed at once (default 1 MB).
persistent cache
if isempty(cache)
    cache = containers.Map('KeyType', 'char', 'ValueType', 'any');
end
if nargin < 2
    chunk_bytes = 1048576;
end
path = fullfile(root, '.scistack', 'refs.log');
d = dir(path);
if isempty(d)
    fsize = 0;
else
    fsize = d(1).bytes;
end
fresh = nargin >= 2;
if ~fresh && isKey(cache, root)
    S = cache(root);
    if S.file_size == fsize
        return
    end
    if fsize < S.file_size
        S = empty_state();
    end
else
    S = empty_state();
end
if fsize > S.offset
    bytes = scistack.internal.read_bytes(path, S.offset);
    last = find(bytes == 10, 1, 'last');
    if ~isempty(last)
        bytes = bytes(1:last);
        S = parse_into(S, bytes, chunk_bytes);
        S.offset = S.offset + last;
        S = fold(S);
    end
end
S.file_size = fsize;
if ~fresh
    cache(root) = S;
end
end

function S = empty_state()
P = struct('var', {{}}, 'addr', {{}}, 'vkeys', {{}}, 'vtext', {{}}, 'version', zeros(0, 1), ...
    'oid', {{}}, 'kind', {{}}, 't', {{}}, 'line', zeros(0, 1));
D = struct('key', {{}}, 'line', zeros(0, 1));
S = struct('P', P, 'D', D, 'deleted', false(0, 1), 'current', false(0, 1), ...
    'offset', 0, 'file_size', 0, 'nlines', 0, ...
    'meta', scistack.internal.Store());
end

function S = parse_into(S, bytes, chunk_bytes)
nl = find(bytes == 10);
first = 1;
while first <= numel(bytes)
    % the chunk ends at the last newline within chunk_bytes (or the next one after it)
    limit = first + chunk_bytes - 1;
    k = find(nl <= limit, 1, 'last');
    if isempty(k) || nl(k) < first
        k = find(nl >= first, 1);
    end
    stop = nl(k);
    txt = char(bytes(first:stop)');
    n = sum(txt == 10);
    [P, D] = parse_chunk(txt, S.nlines + (1:n));
    S.P = append(S.P, P);
    S.D = append(S.D, D);
    S.nlines = S.nlines + n;
    first = stop + 1;
end
end

function A = append(A, B)
f = fieldnames(A);
for j = 1:numel(f)
    A.(f{j}) = [A.(f{j}); B.(f{j})];
end
end

function [P, D] = parse_chunk(txt, linenos)
% Every complete line of TXT (which ends with "\n"; LINENOS are their line numbers),
% parsed without a per-line loop: find the string and nesting structure of the whole text,
% then the top-level keys of each line. Unreadable lines are skipped with a warning.
n = numel(txt);
nl = find(txt == 10);
nlines = numel(nl);
if nlines == 0
    E = empty_state();
    P = E.P;
    D = E.D;
    return
end
starts = [1, nl(1:end - 1) + 1];
isb = txt == '\';
lnb = cummax((~isb) .* (1:n));
q = find(txt == '"');
prev = q - 1;
cnt = zeros(size(q));
m = prev >= 1;
cnt(m) = prev(m) - lnb(prev(m));
realq = q(mod(cnt, 2) == 0);
tog = zeros(1, n);
tog(realq) = 1;
par = cumsum(tog);
blank = starts == nl;
% a line with an odd number of quotes would shift every later line: drop it first
before = [0, par(nl(1:end - 1))];
odd = ~blank & mod(par(nl) - before, 2) == 1;
if any(odd)
    [P, D] = skip_lines(txt, linenos, odd, starts, nl);
    return
end
instr = mod(par, 2) == 1;
opens = (txt == '{' | txt == '[') & ~instr;
closes = (txt == '}' | txt == ']') & ~instr;
depth = cumsum(double(opens) - double(closes));
before = [0, depth(nl(1:end - 1))];
bad = ~blank & (depth(nl) ~= before | txt(starts) ~= '{' | txt(max(nl - 1, 1)) ~= '}');
if any(bad)
    [P, D] = skip_lines(txt, linenos, bad, starts, nl);
    return
end
% top-level keys: depth 1, right after { or , outside a string
[ks, ke] = regexp(txt, '"(addr|kind|oid|op|t|var|version|vkeys)":', 'start', 'end');
keep = ks > 1;
keep(keep) = depth(ks(keep)) == 1 & ~instr(ks(keep) - 1);
ks = ks(keep);
ke = ke(keep);
c1 = txt(ks + 1);
kl = ke - ks - 2;
which = zeros(1, numel(ks));
which(c1 == 'a') = 1;                  % addr
which(c1 == 'k') = 2;                  % kind
which(c1 == 'o' & kl == 3) = 3;        % oid
which(c1 == 'o' & kl == 2) = 4;        % op
which(c1 == 't') = 5;                  % t
which(c1 == 'v' & kl == 3) = 6;        % var
which(c1 == 'v' & kl == 7) = 7;        % version
which(c1 == 'v' & kl == 5) = 8;        % vkeys
names = {'addr', 'kind', 'oid', 'op', 't', 'var', 'version', 'vkeys'};
is_text = [false, true, true, true, true, true, false, false];
term = find(~instr & ((txt == ',' & depth == 1) | (txt == '}' & depth == 0)));
vs = ke + 1;
ve = term(count_le(term, vs) + 1) - 1;
li = count_le(starts, ks);
cb = cumsum(isb);
col = struct();
for j = 1:numel(names)
    sel = which == j;
    c = cell(nlines, 1);
    if is_text(j)
        c(li(sel)) = texts(txt, vs(sel), ve(sel), cb);
    else
        c(li(sel)) = spans(txt, vs(sel), ve(sel));
    end
    col.(names{j}) = c;
end
isput = strcmp(col.op, 'put');
isdel = strcmp(col.op, 'del');
need = {'var', 'addr', 'version', 'oid', 'kind'};
incomplete = false(nlines, 1);
for j = 1:numel(need)
    lacks = cellfun('isempty', col.(need{j}));
    incomplete = incomplete | (isput & lacks);
    if j <= 3
        incomplete = incomplete | (isdel & lacks);
    end
end
if any(incomplete)
    warn_skipped(linenos(incomplete), 'a put or del line lacks a field');
end
pl = find(isput & ~incomplete);
dl = find(isdel & ~incomplete);
P.var = col.var(pl);
P.addr = col.addr(pl);
vk = col.vkeys(pl);
vk(cellfun('isempty', vk)) = {'{}'};
P.vkeys = vk;
P.vtext = col.version(pl);
P.version = str2double(P.vtext);
P.oid = col.oid(pl);
P.kind = col.kind(pl);
tt = col.t(pl);
tt(cellfun('isempty', tt)) = {''};
P.t = tt;
P.line = linenos(pl)';
D.key = strcat(col.var(dl), {char(0)}, col.addr(dl), {char(0)}, col.version(dl));
D.line = linenos(dl)';
end

function c = texts(txt, s, e, cb)
% The JSON string values txt(s:e) (with their quotes) as text: quotes stripped, and the
% rare value with an escape decoded exactly.
c = spans(txt, s + 1, e - 1);
has = find(cb(max(e - 1, 1)) - cb(s) > 0);
for k = has(:)'
    c{k} = scistack.internal.json_parse(txt(s(k):e(k)));
end
end

function c = spans(txt, s, e)
% The texts txt(s(k):e(k)) as a column cell, without a loop.
s = s(:)';
e = e(:)';
L = max(e - s + 1, 0);
if isempty(L)
    c = cell(0, 1);
    return
end
nz = L > 0;
idx = ones(1, sum(L));
pos = cumsum([1, L(nz)]);
pos = pos(1:end - 1);
sn = s(nz);
en = e(nz);
if ~isempty(sn)
    idx(pos) = [sn(1), sn(2:end) - en(1:end - 1)];
end
idx = cumsum(idx);
c = mat2cell(txt(idx), 1, L)';
end

function n = count_le(sorted_a, q)
% For each q(k), how many elements of the sorted vector SORTED_A are <= q(k).
na = numel(sorted_a);
[~, ord] = sort([sorted_a(:); q(:)]);
isa_ = ord <= na;
c = cumsum(isa_);
n = zeros(size(q));
n(ord(~isa_) - na) = c(~isa_);
end

function [P, D] = skip_lines(txt, linenos, bad, starts, nl)
warn_skipped(linenos(bad), 'not a complete JSON object');
keep = find(~bad);
parts = cell(1, numel(keep));
for k = 1:numel(keep)
    parts{k} = txt(starts(keep(k)):nl(keep(k)));
end
[P, D] = parse_chunk([parts{:}], linenos(keep));
end

function warn_skipped(lines, why)
shown = sprintf('%d, ', lines(1:min(end, 10)));
warning('scistack:corruptJournal', ['refs.log: skipped %d unreadable line(s) (%s): ', ...
    'line %s. Run `scistack fsck` to check the journal'], numel(lines), why, shown(1:end - 2));
end

function S = fold(S)
P = S.P;
np = numel(P.version);
pkey = strcat(P.var, {char(0)}, P.addr, {char(0)}, P.vtext);
deleted = false(np, 1);
if ~isempty(S.D.key)
    [ukeys, ~, ui] = unique(S.D.key);
    last = accumarray(ui(:), S.D.line(:), [numel(ukeys), 1], @max);
    [tf, loc] = ismember(pkey, ukeys);
    deleted(tf) = P.line(tf) < last(loc(tf));
end
current = false(np, 1);
alive = find(~deleted);
if ~isempty(alive)
    g = strcat(P.var(alive), {char(0)}, P.addr(alive), {char(0)}, P.vkeys(alive));
    [~, ~, gi] = unique(g);
    [~, ord] = sortrows([gi(:), P.version(alive), P.line(alive)]);
    gs = gi(ord);
    ends = ord([gs(2:end) ~= gs(1:end - 1); true]);
    current(alive(ends)) = true;
end
S.deleted = deleted;
S.current = current;
end
