function f = Thunk(fn, varargin)
%THUNK Wrap a MATLAB function so that its calls are cached and recorded as lineage.
%   filter_fn = scistack.Thunk(@bandpass_filter);
%   filtered = filter_fn(RawEMG().load('subject', 1, 'session', 'pre'), 20, 450);
%   FilteredEMG().save(filtered, 'subject', 1, 'session', 'pre');   % saved with its call
%
%   FN is a named function in a .m file (its identity is the normalised text of the file,
%   as in scistack.for_each). Each argument that is a record returned by load (or an earlier
%   Thunk result) is passed as its data and keyed by its oid; a cell or struct array of
%   records is passed as a cell of their data; anything else is a constant. A call with the
%   same inputs as an earlier Thunk call or for_each combination of the same, unchanged
%   .m file is a cache hit: FN is not called and the stored outputs are returned.
%   The result is a record: data, metadata (empty), oid, call (the call record's oid) and
%   cached (true on a hit); with several outputs, one record per output.
%   Options: scistack.Thunk(@fn, 'helpers', {@smooth}) counts other function files in FN's
%   identity. Costs: one `scistack matlab-thunk` per call (a second,
%   `matlab-thunk-commit`, when FN runs); a call repeated in the same session starts no
%   Python. See matlab/README.md, "Thunk".
[name, file] = scistack.internal.function_file(fn, 'the function', 'Thunk');
args = scistack.internal.plain_args(varargin);
if mod(numel(args), 2) ~= 0 || (~isempty(args) && ~strcmp(args{1}, 'helpers'))
    error('scistack:badArgument', ['Thunk(FN, ''helpers'', {@smooth, ...}) is the only ', ...
        'option']);
end
helpers = cell(1, 0);
if ~isempty(args)
    h = args{2};
    if ~iscell(h)
        h = {h};
    end
    for k = 1:numel(h)
        [~, helpers{k}] = scistack.internal.function_file(h{k}, 'a helper', 'Thunk');
    end
end
info = struct('name', name, 'file', file, 'helpers', {helpers});
f = @(varargin) scistack.internal.call_thunk(info, varargin{:});
end
