function varargout = for_each(varargin)
%FOR_EACH Alias of scistack.for_each, for code written against the scidb name.
if nargout == 0
    scistack.for_each(varargin{:});
else
    varargout = cell(1, nargout);
    [varargout{:}] = scistack.for_each(varargin{:});
end
end
