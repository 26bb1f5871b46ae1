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
    if strcmp(name, 'version') || name(1) == '$'
        error('scistack:badArgument', ['"%s" is reserved and cannot be a metadata key; ', ...
            'rename it'], name);
    end
    v = scistack.internal.meta_value(name, args{k + 1});
    if any(strcmp(name, cfg.schema_keys))
        addr(name) = v;
    else
        vkeys(name) = v;
    end
end
if addr.Count == 0
    error('scistack:badArgument', ['a value must be saved at an address: give at least ', ...
        'one schema key (%s)'], strjoin(cfg.schema_keys, ', '));
end
end
