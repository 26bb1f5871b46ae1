function S = journal(root, chunk_bytes)
%JOURNAL The folded ref journal <ROOT>/.scistack/refs.log (docs/format.md section 2).
%   S = journal(ROOT) returns the state of every `put` line:
%     S.P.var, S.P.addr, S.P.vkeys (canonical JSON text of the two objects), S.P.version,
%     S.P.oid, S.P.kind, S.P.t, S.P.line   (one element per put, in journal order)
%     S.deleted   a `del` line after the put removed (var, addr, version)
%     S.current   the put is the highest surviving version of its (var, addr, vkeys)
%     S.meta      a scistack.internal.Store (a handle): decoded addr/vkeys by JSON text
%     S.index     containers.Map (a handle): per-variable query columns (select_records)
%   Only complete lines count: a last line without "\n" is an interrupted write. Only lines
%   before the end a Python writer published in refs.lock count (see readable_end): MATLAB
%   cannot take the shared flock Python's readers take, and complete lines past that end may
%   be an append under way that is taken back (a full disk). Lines of
%   other ops (call, run, ...) are skipped; an unreadable complete line (e.g. the fragment
%   of an interrupted write that a later append terminated) is skipped with a
%   scistack:corruptJournal warning that names its line number.
%   The state is cached per project and keyed on the file size: an unchanged journal costs
%   one dir() call, a grown one is read from where the cached state stopped (the journal
%   is append-only), a shrunk one is re-read.
%   CHUNK_BYTES (tests) bounds how much text is parsed at once (default 1 MB).
persistent cache
if isempty(cache)
    cache = containers.Map('KeyType', 'char', 'ValueType', 'any');
end
if nargin < 2
    chunk_bytes = 1048576;
end
folder = scistack.internal.store_dir(root);
path = fullfile(folder, 'refs.log');
if ~strcmp(folder, fullfile(root, '.scistack')) && scistack.internal.lab_refreshed(root)
    scistack.internal.lab_sync(root);  % a lab project: its journal mirror, brought up to date
end
d = dir(path);
if isempty(d)
    fsize = 0;
else
    fsize = d(1).bytes;
end
fresh = nargin >= 2;
if ~fresh && isKey(cache, root)
    S = cache(root);
    if S.file_size == fsize && ~S.short
        return
    end
    if fsize < S.file_size
        S = empty_state();
    end
else
    S = empty_state();
end
S.short = false;
if fsize > S.offset
    stop = readable_end(folder, path, fsize, S.offset);
    S.short = stop < fsize;  % (looked at again at the next call, even if the size is the same)
    bytes = scistack.internal.read_bytes(path, S.offset);
    bytes = bytes(1:min(end, stop - S.offset));
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

function stop = readable_end(folder, path, fsize, offset)
% Where MATLAB may read the journal PATH (FSIZE bytes; read up to OFFSET) up to, as Python's
% readers do (scistack/index/journal.py, Journal._reading). A Python writer holding the
% journal writes into refs.lock the end of what is complete (and after each append that
% succeeded): "<end> <inode> <crc32>", 20 + 20 digits and 8 hex. An append that met a full
% disk is taken back after part of it may be written, so a complete line past that end is
% not yet true. Python's readers take a shared flock without waiting and read to the end
% when no writer holds the journal; MATLAB and Octave cannot flock, so they always read
% only up to the published end (every writer publishes it before it releases the lock, so
% at rest it is the journal's end). No lock file, or an empty one (no writer that publishes
% has come: an older scistack, or a lab project's mirror, appended under its own lock):
% the whole file. A record for another file (the journal replaced since): no writer of this
% one has held it, the whole file. A record that does not read (being rewritten as read):
% nothing new now; the next call looks again.
stop = fsize;
fid = fopen(fullfile(folder, 'refs.lock'), 'r');
if fid < 0
    return
end
txt = fread(fid, 64, '*char')';
fclose(fid);
if isempty(txt)
    return
end
tok = regexp(txt, '^(\d{20}) (\d{20}) ([0-9a-f]{8})\n', 'tokens', 'once');
if isempty(tok) || hex2dec(tok{3}) ~= double(crc32(uint8([tok{1}, ' ', tok{2}])))
    stop = offset;
    return
end
published = str2double(tok{1});
inode = file_inode(path);
if isempty(inode)
    same = published <= fsize;  % (no inode to compare: an end past this file is another's)
else
    same = inode == str2double(tok{2});
end
if same
    stop = max(min(published, fsize), offset);
end
end

function ino = file_inode(path)
% The inode number of PATH ([] where it cannot be known: Windows, MATLAB without Java).
ino = [];
try
    if exist('OCTAVE_VERSION', 'builtin') ~= 0
        [info, err] = stat(path);
        if err == 0
            ino = double(info.ino);
        end
    else
        attr = java.nio.file.Files.getAttribute(java.io.File(path).toPath(), 'unix:ino', ...
            javaArray('java.nio.file.LinkOption', 0));
        ino = double(attr.longValue());
    end
catch
    ino = [];
end
end

function c = crc32(bytes)
% CRC-32 (zlib's, as Python's zlib.crc32) of the uint8 vector BYTES.
persistent table
if isempty(table)
    table = zeros(256, 1, 'uint32');
    for n = 0:255
        v = uint32(n);
        for k = 1:8
            if bitand(v, uint32(1))
                v = bitxor(bitshift(v, -1), uint32(3988292384));
            else
                v = bitshift(v, -1);
            end
        end
        table(n + 1) = v;
    end
end
c = uint32(4294967295);
for b = double(bytes(:))'
    c = bitxor(table(double(bitand(bitxor(c, uint32(b)), uint32(255))) + 1), bitshift(c, -8));
end
c = bitxor(c, uint32(4294967295));
end

function S = empty_state()
P = struct('var', {{}}, 'addr', {{}}, 'vkeys', {{}}, 'vtext', {{}}, 'version', zeros(0, 1), ...
    'oid', {{}}, 'kind', {{}}, 't', {{}}, 'line', zeros(0, 1));
D = struct('var', {{}}, 'addr', {{}}, 'version', zeros(0, 1), 'line', zeros(0, 1));
S = struct('P', P, 'D', D, 'deleted', false(0, 1), 'current', false(0, 1), ...
    'offset', 0, 'file_size', 0, 'short', false, 'nlines', 0, ...
    'meta', scistack.internal.Store(), ...
    'index', containers.Map('KeyType', 'char', 'ValueType', 'any'));
end

function S = parse_into(S, bytes, chunk_bytes)
nl = find(bytes == 10);
first = 1;
Ps = {};
Ds = {};
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
    [Ps{end + 1}, Ds{end + 1}] = parse_chunk(txt, S.nlines + (1:n));
    S.nlines = S.nlines + n;
    first = stop + 1;
end
S.P = append(S.P, Ps);
S.D = append(S.D, Ds);
end

function A = append(A, parts)
f = fieldnames(A);
for j = 1:numel(f)
    cols = cellfun(@(p) p.(f{j}), parts, 'UniformOutput', false);
    A.(f{j}) = vertcat(A.(f{j}), cols{:});
end
end

function [P, D] = parse_chunk(txt, linenos)
% Every complete line of TXT (which ends with "\n"; LINENOS are their line numbers),
% parsed without a per-line loop. Only the structural characters are examined: quotes
% (which ones open or close a string), brackets and commas outside strings, and the
% nesting depth after each bracket; the top-level keys of each line follow from those.
% Unreadable lines are skipped with a warning.
cle = @scistack.internal.count_le;
nl = find(txt == 10);
nlines = numel(nl);
if nlines == 0
    E = empty_state();
    P = E.P;
    D = E.D;
    return
end
starts = [1, nl(1:end - 1) + 1];
blank = starts == nl;
realq = real_quotes(txt);
% a line with an odd number of quotes would shift every later line: drop it first
cq = cle(realq, nl);
odd = ~blank & mod(cq - [0, cq(1:end - 1)], 2) == 1;
if any(odd)
    [P, D] = skip_lines(txt, linenos, odd, starts, nl);
    return
end
brk = find(txt == '{' | txt == '}' | txt == '[' | txt == ']');
brk = brk(mod(cle(realq, brk), 2) == 0);           % brackets outside strings
step = 2 * (txt(brk) == '{' | txt(brk) == '[') - 1;
dep = cumsum(step);                                    % depth after each bracket
depth_at = @(p) lookup_depth(dep, cle(brk, p));
dl = depth_at(nl);
bad = ~blank & (dl ~= [0, dl(1:end - 1)] | txt(starts) ~= '{' | txt(max(nl - 1, 1)) ~= '}');
if any(bad)
    [P, D] = skip_lines(txt, linenos, bad, starts, nl);
    return
end
% top-level keys: depth 1, right after { or , outside a string (strfind: regexp builds
% every kind of output for each match, which is far slower on megabytes of text)
keynames = {'addr', 'kind', 'oid', 'op', 't', 'var', 'version', 'vkeys'};
ks = [];
which = [];
for j = 1:numel(keynames)
    at = strfind(txt, ['"', keynames{j}, '":']);
    ks = [ks, at]; %#ok<AGROW>
    which = [which, j * ones(1, numel(at))]; %#ok<AGROW>
end
keep = ks > 1;
keep(keep) = depth_at(ks(keep)) == 1 & mod(cle(realq, ks(keep) - 1), 2) == 0;
ks = ks(keep);
which = which(keep);
ke = ks + cellfun('length', keynames(which)) + 2;
names = keynames;
is_text = [false, true, true, true, true, true, false, false];
com = find(txt == ',');
com = com(mod(cle(realq, com), 2) == 0 & depth_at(com) == 1);
term = sort([com, brk(step < 0 & dep == 0)]);         % where a top-level value ends
vs = ke + 1;
ve = term(cle(term, vs) + 1) - 1;
li = cle(starts, ks);
bs = find(txt == '\');
col = struct();
for j = 1:numel(names)
    sel = which == j;
    c = cell(nlines, 1);
    if is_text(j)
        c(li(sel)) = texts(txt, vs(sel), ve(sel), bs);
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
D.var = col.var(dl);
D.addr = col.addr(dl);
D.version = str2double(col.version(dl));
D.line = linenos(dl)';
end

function c = texts(txt, s, e, bs)
% The JSON string values txt(s:e) (with their quotes) as text: quotes stripped, and the
% rare value with an escape decoded exactly.
c = spans(txt, s + 1, e - 1);
if isempty(bs)
    return
end
has = find(scistack.internal.count_le(bs, e) - scistack.internal.count_le(bs, s) > 0);
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

function q = real_quotes(txt)
% Positions of the quotes that open or close strings: not those escaped by an odd run of
% backslashes.
q = find(txt == '"');
bs = find(txt == '\');
if isempty(bs)
    return
end
esc = q(ismember(q - 1, bs));
drop = false(size(esc));
for k = 1:numel(esc)
    j = esc(k) - 1;
    while j >= 1 && txt(j) == '\'
        j = j - 1;
    end
    drop(k) = mod(esc(k) - 1 - j, 2) == 1;
end
q = setdiff(q, esc(drop));
end

function d = lookup_depth(dep, k)
% Depth after the K-th structural bracket (0 before the first).
d = zeros(size(k));
d(k > 0) = dep(k(k > 0));
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
% Deleted: a del of (var, addr, version) after the put. Current: the highest surviving
% version per (var, addr, vkeys). Texts are turned into integer ids first, so the work is
% numeric row operations.
P = S.P;
D = S.D;
np = numel(P.version);
nd = numel(D.version);
[~, ~, vid] = unique([P.var; D.var]);
[~, ~, aid] = unique([P.addr; D.addr]);
[~, ~, kid] = unique(P.vkeys);
vid = vid(:);
aid = aid(:);
kid = kid(:);
deleted = false(np, 1);
if nd > 0
    dkey = [vid(np + 1:end), aid(np + 1:end), D.version(:)];
    [ukeys, ~, ui] = unique(dkey, 'rows');
    last = accumarray(ui(:), D.line(:), [size(ukeys, 1), 1], @max);
    [tf, loc] = ismember([vid(1:np), aid(1:np), P.version(:)], ukeys, 'rows');
    deleted(tf) = P.line(tf) < last(loc(tf));
end
current = false(np, 1);
alive = find(~deleted);
if ~isempty(alive)
    keyrows = [vid(alive), aid(alive), kid(alive), P.version(alive), P.line(alive)];
    [srt, ord] = sortrows(keyrows);
    same = all(srt(2:end, 1:3) == srt(1:end - 1, 1:3), 2);
    ends = ord([~same; true]);
    current(alive(ends)) = true;
end
S.deleted = deleted;
S.current = current;
end
