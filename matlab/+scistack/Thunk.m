function f = Thunk(fn)
%THUNK Wrap a function so it can be called on loaded records as on plain values.
%   filter_fn = scistack.Thunk(@bandpass_filter);
%   filtered = filter_fn(RawEMG().load('subject', 1, 'session', 'pre'), 20, 450);
%   Each argument that is a record returned by load (a struct with data, metadata and oid)
%   is passed as its data; other arguments pass unchanged. The result is FN's plain result.
%   Unlike scistack.for_each, a Thunk call does not record lineage or use the call cache
%   yet (matlab/README.md): use for_each for cached, traced steps.
if ischar(fn)
    fn = str2func(fn);
end
if ~isa(fn, 'function_handle')
    error('scistack:badArgument', 'Thunk(FN): FN must be a function handle such as @bandpass');
end
f = @(varargin) scistack.internal.call_thunk(fn, varargin{:});
end

