function [addr, vkeys] = split_meta(cfg, args)
%SPLIT_META Name/value pairs of a save -> the address (schema keys) and the version keys
%   (every other key), as containers.Map of JSON-ready values. Metadata numbers that are
%   whole (|v| <= 2^53) become JSON integers, so subject=1 from MATLAB is the same address
%   as subject=1 from Python; other doubles stay floats.
if mod(numel(args), 2) ~= 0
    error('scistack:badArgument', ['metadata must be name/value pairs, e.g. ', ...
        'save(x, ''subject'', 1, ''session'', ''pre'')']);
end
addr = containers.Map('KeyType', 'char', 'ValueType', 'any');
vkeys = containers.Map('KeyType', 'char', 'ValueType', 'any');
for k = 1:2:numel(args)
    name = args{k};
    if ~ischar(name) || isempty(name) || size(name, 1) ~= 1
        error('scistack:badArgument', 'metadata argument %d must be a key name (char)', k);
    end
    v = scistack.internal.meta_value(name, args{k + 1});
    if any(strcmp(name, cfg.schema_keys))
        addr(name) = v;
    else
        check_version_key(cfg, name);
        vkeys(name) = v;
    end
end
if addr.Count == 0
    error('scistack:badArgument', ['a value must be saved at an address: give at least ', ...
        'one schema key (%s)'], strjoin(cfg.schema_keys, ', '));
end
end

function check_version_key(cfg, name)
% Python's rules for a version key (scistack/index/sql.py check_identifier, RESERVED_NAMES;
% Index.check_names): checked here so that a save Python would refuse is refused at once.
if isempty(regexp(name, '^[A-Za-z_][A-Za-z0-9_]*$', 'once'))
    error('scistack:badArgument', ['metadata key "%s" cannot be used: names must start ', ...
        'with an ASCII letter (A-Z, a-z) or underscore and contain only ASCII letters, ', ...
        'digits and underscores (they become SQL columns and MATLAB fields); e.g. "%s"'], ...
        name, suggested(name));
end
if any(strcmp(lower(name), reserved_names()))
    error('scistack:badArgument', ['metadata key "%s" is reserved by scistack (%s); ', ...
        'rename it, e.g. %s_'], name, strjoin(reserved_names(), ', '), name);
end
twin = cfg.schema_keys(strcmpi(name, cfg.schema_keys));
if ~isempty(twin)
    error('scistack:badArgument', ['metadata key "%s" is the schema key "%s" but for case ', ...
        '(a typo?); SQL names ignore case, so it could not be told apart. Write ''%s'''], ...
        name, twin{1}, twin{1});
end
end

function names = reserved_names()
% scistack/index/sql.py RESERVED_NAMES (tests/matlab/test_octave_queue.py checks they agree)
names = {'addr', 'as_df', 'as_table', 'call', 'created_at', 'data', 'fn', 'kind', ...
    'metadata', 'oid', 'params', 'rn', 'scistack_runs', 'scistack_variables', 'summary', ...
    'value', 'var', 'version', 'vkeys', 'where'};
end

function s = suggested(name)
s = regexprep(name, '[^A-Za-z0-9_]', '_');
if isempty(regexp(s, '^[A-Za-z_]', 'once'))
    s = ['k_', s];
end
end
