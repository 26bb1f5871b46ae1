classdef V1 < scistack.BaseVariable
end
