function varargout = Thunk(varargin)
%THUNK Alias of scistack.Thunk, for code written against the scidb name.
if nargout == 0
    scistack.Thunk(varargin{:});
else
    varargout = cell(1, nargout);
    [varargout{:}] = scistack.Thunk(varargin{:});
end
end
