function varargout = configure_database(varargin)
%CONFIGURE_DATABASE Alias of scistack.configure_database, for code written against the scidb name.
if nargout == 0
    scistack.configure_database(varargin{:});
else
    varargout = cell(1, nargout);
    [varargout{:}] = scistack.configure_database(varargin{:});
end
end
