function value = json_parse(text, ref_fn, top_pairs)
%JSON_PARSE Exact JSON parser with scistack's canonical tags (docs/format.md section 1.2).
%   VALUE = json_parse(TEXT, REF_FN) parses TEXT (a char row) and resolves tags:
%   $float -> NaN/Inf/-Inf, $complex -> complex double, $tuple -> cell row, $bytes -> uint8
%   column, $np -> typed scalar, $dict -> struct or containers.Map, $ref -> REF_FN(oid)
%   (the oid text itself when REF_FN is empty). Arrays -> 1xN cell rows ({} when empty);
%   objects -> struct when every key is a valid MATLAB name, else containers.Map; integers ->
%   double when |v| <= 2^53, else int64/uint64; null -> []; true/false -> logical.
%   json_parse(TEXT, REF_FN, true) returns a top-level object as struct('keys', {..},
%   'vals', {..}) (raw keys, values decoded) instead of a struct or map.
if nargin < 2
    ref_fn = [];
end
if nargin < 3
    top_pairs = false;
end
T = tokenize(text);
[value, k] = parse_value(T, 1, ref_fn, top_pairs);
if k <= T.n
    error('scistack:badJson', 'unexpected text after the JSON value: %s', T.tok{k});
end
end

function T = tokenize(text)
pattern = ['"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?', ...
    '|true|false|null|[{}\[\]:,]|\S'];
[tok, starts] = regexp(text, pattern, 'match', 'start');
n = numel(tok);
first = text(starts);
kind = repmat('x', 1, n);
punct = first == '{' | first == '}' | first == '[' | first == ']' | first == ':' | first == ',';
kind(punct) = first(punct);
isstr = first == '"';
kind(isstr) = 's';
isnum = first == '-' | (first >= '0' & first <= '9');
kind(isnum) = 'n';
val = cell(1, n);
lit = find(first == 't' | first == 'f' | first == 'n');
for k = lit
    switch tok{k}
        case 'true'
            val{k} = true;
            kind(k) = 'v';
        case 'false'
            val{k} = false;
            kind(k) = 'v';
        case 'null'
            val{k} = [];
            kind(k) = 'v';
    end
end
if any(kind == 'x')
    bad = find(kind == 'x', 1);
    error('scistack:badJson', 'invalid JSON near "%s"', tok{bad});
end
if any(isnum)
    numtok = tok(isnum);
    nums = str2double(numtok);
    big = find(abs(nums) >= 9007199254740992);
    vals = num2cell(nums);
    for j = big
        t = numtok{j};
        if ~any(t == '.' | t == 'e' | t == 'E')
            vals{j} = scistack.internal.dec_to_int(t);
        end
    end
    val(isnum) = vals;
end
if any(isstr)
    strs = tok(isstr);
    for j = 1:numel(strs)
        s = strs{j};
        s = s(2:end - 1);
        if isempty(s)
            s = '';
        elseif any(s == '\')
            s = unescape(s);
        end
        strs{j} = s;
    end
    val(isstr) = strs;
end
T.tok = tok;
T.kind = [kind, 'E'];
T.val = val;
T.n = n;
end

function [v, k] = parse_value(T, k, ref_fn, top_pairs)
switch T.kind(k)
    case '{'
        [v, k] = parse_object(T, k, ref_fn, top_pairs);
    case '['
        [v, k] = parse_array(T, k, ref_fn);
    case {'s', 'n', 'v'}
        v = T.val{k};
        k = k + 1;
    case 'E'
        error('scistack:badJson', 'JSON text ends too early');
    otherwise
        error('scistack:badJson', 'unexpected "%s" in JSON', T.tok{k});
end
end

function [v, k] = parse_array(T, k, ref_fn)
k = k + 1;
if T.kind(k) == ']'
    v = {};
    k = k + 1;
    return
end
items = cell(1, 16);
n = 0;
while true
    c = T.kind(k);
    if c == 's' || c == 'n' || c == 'v'
        x = T.val{k};
        k = k + 1;
    else
        [x, k] = parse_value(T, k, ref_fn, false);
    end
    n = n + 1;
    if n > numel(items)
        items{2 * n} = [];
    end
    items{n} = x;
    c = T.kind(k);
    k = k + 1;
    if c == ']'
        break
    elseif c ~= ','
        error('scistack:badJson', 'expected , or ] in a JSON array');
    end
end
v = items(1:n);
end

function [v, k] = parse_object(T, k, ref_fn, top_pairs)
k = k + 1;
keys = {};
vals = {};
if T.kind(k) == '}'
    k = k + 1;
else
    while true
        if T.kind(k) ~= 's'
            error('scistack:badJson', 'expected a string key in a JSON object');
        end
        key = T.val{k};
        if T.kind(k + 1) ~= ':'
            error('scistack:badJson', 'expected : after the JSON key "%s"', key);
        end
        k = k + 2;
        c = T.kind(k);
        if c == 's' || c == 'n' || c == 'v'
            x = T.val{k};
            k = k + 1;
        else
            [x, k] = parse_value(T, k, ref_fn, false);
        end
        keys{end + 1} = key; %#ok<AGROW>
        vals{end + 1} = x; %#ok<AGROW>
        c = T.kind(k);
        k = k + 1;
        if c == '}'
            break
        elseif c ~= ','
            error('scistack:badJson', 'expected , or } in a JSON object');
        end
    end
end
if top_pairs
    v = struct('keys', {keys}, 'vals', {vals});
elseif numel(keys) == 1 && ~isempty(keys{1}) && keys{1}(1) == '$'
    v = untag(keys{1}, vals{1}, ref_fn);
else
    v = scistack.internal.make_dict(keys, vals);
end
end

function v = untag(tag, inner, ref_fn)
switch tag
    case '$float'
        switch inner
            case 'nan'
                v = NaN;
            case 'inf'
                v = Inf;
            case '-inf'
                v = -Inf;
            otherwise
                error('scistack:badJson', 'bad $float value %s', inner);
        end
    case '$complex'
        v = complex(double(inner{1}), double(inner{2}));
    case '$tuple'
        v = inner;
    case '$bytes'
        v = scistack.internal.b64_decode(inner);
    case '$np'
        v = np_scalar(inner{1}, inner{2});
    case '$dict'
        keys = cell(1, numel(inner));
        vals = cell(1, numel(inner));
        for j = 1:numel(inner)
            keys{j} = inner{j}{1};
            vals{j} = inner{j}{2};
        end
        v = scistack.internal.make_dict(keys, vals);
    case '$ref'
        if isempty(ref_fn)
            v = inner;
        else
            v = ref_fn(inner);
        end
    otherwise
        error('scistack:badJson', 'unknown canonical JSON tag %s', tag);
end
end

function v = np_scalar(descr, x)
parts = regexp(descr, '^([<>|=]?)([a-zA-Z])(\d+)(?:\[(\w+)\])?$', 'tokens', 'once');
if isempty(parts)
    error('scistack:unsupportedDtype', 'numpy scalar dtype %s is not supported', descr);
end
kind = parts{2};
itemsize = str2double(parts{3});
switch kind
    case 'b'
        v = logical(x);
    case {'i', 'u'}
        cls = sprintf('int%d', 8 * itemsize);
        if kind == 'u'
            cls = ['u', cls];
        end
        v = cast(x, cls);
    case 'f'
        if itemsize == 8
            v = double(x);
        else
            v = single(x);
        end
    case 'c'
        if itemsize == 16
            v = complex(double(x{1}), double(x{2}));
        else
            v = complex(single(x{1}), single(x{2}));
        end
    case {'M', 'm'}
        v = int64(x);
    case 'U'
        v = x;
    case 'S'
        v = char(scistack.internal.b64_decode(x)');
    otherwise
        error('scistack:unsupportedDtype', 'numpy scalar dtype %s is not supported', descr);
end
end

function s = unescape(inner)
cp = scistack.internal.char_to_cp(inner);
out = zeros(1, numel(cp));
n = 0;
i = 1;
m = numel(cp);
while i <= m
    c = cp(i);
    if c ~= 92
        n = n + 1;
        out(n) = c;
        i = i + 1;
        continue
    end
    e = cp(i + 1);
    i = i + 2;
    switch e
        case 98
            c = 8;
        case 102
            c = 12;
        case 110
            c = 10;
        case 114
            c = 13;
        case 116
            c = 9;
        case 117
            c = hex2dec(char(cp(i:i + 3)));
            i = i + 4;
            if c >= 55296 && c < 56320 && i + 5 <= m && cp(i) == 92 && cp(i + 1) == 117
                lo = hex2dec(char(cp(i + 2:i + 5)));
                if lo >= 56320 && lo < 57344
                    c = 65536 + (c - 55296) * 1024 + (lo - 56320);
                    i = i + 6;
                end
            end
        otherwise
            c = e;
    end
    n = n + 1;
    out(n) = c;
end
s = scistack.internal.cp_to_char(out(1:n));
end
